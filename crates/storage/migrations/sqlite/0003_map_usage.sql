-- What each Map store holds (items, and bytes of keys and values), kept by triggers in the
-- transaction of every insert, update and delete, as archive_usage is for archives: a byte
-- quota (PEP items, private XML) is checked by reading one row instead of summing the
-- store, whichever path changed it, and stays right across restarts.
CREATE TABLE map_usage (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    items    INTEGER NOT NULL,
    bytes    INTEGER NOT NULL,
    PRIMARY KEY (host, username, store)
) WITHOUT ROWID;

INSERT INTO map_usage (host, username, store, items, bytes)
SELECT host, username, store, COUNT(*),
       COALESCE(SUM(octet_length(item_key) + octet_length(value)), 0)
FROM map GROUP BY host, username, store;

CREATE TRIGGER map_usage_insert AFTER INSERT ON map
BEGIN
    INSERT INTO map_usage (host, username, store, items, bytes)
    VALUES (NEW.host, NEW.username, NEW.store, 1,
            octet_length(NEW.item_key) + octet_length(NEW.value))
    ON CONFLICT (host, username, store) DO UPDATE
    SET items = items + 1, bytes = bytes + excluded.bytes;
END;

-- An upsert that replaces a value fires this one (not insert and delete).
CREATE TRIGGER map_usage_update AFTER UPDATE ON map
BEGIN
    UPDATE map_usage
    SET items = items - 1, bytes = bytes - octet_length(OLD.item_key) - octet_length(OLD.value)
    WHERE host = OLD.host AND username = OLD.username AND store = OLD.store;
    INSERT INTO map_usage (host, username, store, items, bytes)
    VALUES (NEW.host, NEW.username, NEW.store, 1,
            octet_length(NEW.item_key) + octet_length(NEW.value))
    ON CONFLICT (host, username, store) DO UPDATE
    SET items = items + 1, bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER map_usage_delete AFTER DELETE ON map
BEGIN
    UPDATE map_usage
    SET items = items - 1, bytes = bytes - octet_length(OLD.item_key) - octet_length(OLD.value)
    WHERE host = OLD.host AND username = OLD.username AND store = OLD.store;
END;
