-- What each archive holds, kept by a trigger in the transaction of every insert and delete, so
-- that a quota in records or bytes is checked by reading one row instead of counting or
-- summing the archive, whichever path removed records (delete, clear, trims, retention,
-- account removal), and stays right across restarts.
CREATE TABLE archive_usage (
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    records  BIGINT NOT NULL,
    bytes    BIGINT NOT NULL,
    PRIMARY KEY (host, username, store)
);

INSERT INTO archive_usage (host, username, store, records, bytes)
SELECT host, username, store, COUNT(*), COALESCE(SUM(octet_length(payload)), 0)
FROM archive GROUP BY host, username, store;

CREATE FUNCTION archive_usage_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO archive_usage (host, username, store, records, bytes)
        VALUES (NEW.host, NEW.username, NEW.store, 1, octet_length(NEW.payload))
        ON CONFLICT (host, username, store) DO UPDATE
        SET records = archive_usage.records + 1, bytes = archive_usage.bytes + EXCLUDED.bytes;
        RETURN NEW;
    END IF;
    UPDATE archive_usage
    SET records = records - 1, bytes = bytes - octet_length(OLD.payload)
    WHERE host = OLD.host AND username = OLD.username AND store = OLD.store;
    RETURN OLD;
END
$$;

CREATE TRIGGER archive_usage AFTER INSERT OR DELETE ON archive
FOR EACH ROW EXECUTE FUNCTION archive_usage_count();
