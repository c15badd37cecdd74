-- What each Map store holds (items, and bytes of keys and values), kept by a trigger in the
-- transaction of every insert, update and delete, as archive_usage is for archives: a byte
-- quota (PEP items, private XML) is checked by reading one row instead of summing the
-- store, whichever path changed it, and stays right across restarts.
CREATE TABLE map_usage (
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    items    BIGINT NOT NULL,
    bytes    BIGINT NOT NULL,
    PRIMARY KEY (host, username, store)
);

INSERT INTO map_usage (host, username, store, items, bytes)
SELECT host, username, store, COUNT(*),
       COALESCE(SUM(octet_length(item_key) + octet_length(value)), 0)
FROM map GROUP BY host, username, store;

CREATE FUNCTION map_usage_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An upsert that replaces a value is an UPDATE: the old item out, the new one in.
    IF TG_OP = 'UPDATE' OR TG_OP = 'DELETE' THEN
        UPDATE map_usage
        SET items = items - 1,
            bytes = bytes - octet_length(OLD.item_key) - octet_length(OLD.value)
        WHERE host = OLD.host AND username = OLD.username AND store = OLD.store;
    END IF;
    IF TG_OP = 'UPDATE' OR TG_OP = 'INSERT' THEN
        INSERT INTO map_usage (host, username, store, items, bytes)
        VALUES (NEW.host, NEW.username, NEW.store, 1,
                octet_length(NEW.item_key) + octet_length(NEW.value))
        ON CONFLICT (host, username, store) DO UPDATE
        SET items = map_usage.items + 1, bytes = map_usage.bytes + EXCLUDED.bytes;
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER map_usage AFTER INSERT OR UPDATE OR DELETE ON map
FOR EACH ROW EXECUTE FUNCTION map_usage_count();
