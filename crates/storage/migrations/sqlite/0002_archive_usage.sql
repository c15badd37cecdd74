-- What each archive holds, kept by triggers in the transaction of every insert and delete, so
-- that a quota in records or bytes is checked by reading one row instead of counting or
-- summing the archive, whichever path removed records (delete, clear, trims, retention,
-- account removal), and stays right across restarts.
CREATE TABLE archive_usage (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    records  INTEGER NOT NULL,
    bytes    INTEGER NOT NULL,
    PRIMARY KEY (host, username, store)
) WITHOUT ROWID;

INSERT INTO archive_usage (host, username, store, records, bytes)
SELECT host, username, store, COUNT(*), COALESCE(SUM(length(payload)), 0)
FROM archive GROUP BY host, username, store;

CREATE TRIGGER archive_usage_insert AFTER INSERT ON archive
BEGIN
    INSERT INTO archive_usage (host, username, store, records, bytes)
    VALUES (NEW.host, NEW.username, NEW.store, 1, length(NEW.payload))
    ON CONFLICT (host, username, store) DO UPDATE
    SET records = records + 1, bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER archive_usage_delete AFTER DELETE ON archive
BEGIN
    UPDATE archive_usage
    SET records = records - 1, bytes = bytes - length(OLD.payload)
    WHERE host = OLD.host AND username = OLD.username AND store = OLD.store;
END;
