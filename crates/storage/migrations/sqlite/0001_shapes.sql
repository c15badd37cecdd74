-- The three storage shapes (see xmppd_core::storage). Every feature shares these tables,
-- keyed by (host, username, store); there is no table per feature.
-- Text compares with SQLite's BINARY collation: byte order of UTF-8, i.e. code point order.

-- KeyVal: one document per (host, username, store).
CREATE TABLE keyval (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    value    BLOB NOT NULL,
    PRIMARY KEY (host, username, store)
) WITHOUT ROWID;

-- KeyVal::users(host, store) lists users per store.
CREATE INDEX keyval_by_store ON keyval (host, store, username);

-- Map: many items per (host, username, store).
CREATE TABLE map (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    item_key TEXT NOT NULL,
    value    BLOB NOT NULL,
    PRIMARY KEY (host, username, store, item_key)
) WITHOUT ROWID;

-- Archive: time-ordered records. AUTOINCREMENT guarantees an id is never reused, even after
-- the newest record was deleted, so a client's paging id never points at a different record.
CREATE TABLE archive (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    host         TEXT NOT NULL,
    username     TEXT NOT NULL,
    store        TEXT NOT NULL,
    with_jid     TEXT NOT NULL,
    timestamp_us INTEGER NOT NULL,
    payload      BLOB NOT NULL
);

-- Paging, counting and clearing one archive.
CREATE INDEX archive_by_id ON archive (host, username, store, id);
-- Filtering by the other party (MAM `with`).
CREATE INDEX archive_by_with ON archive (host, username, store, with_jid, id);
-- Filtering by time (MAM `start`/`end`).
CREATE INDEX archive_by_time ON archive (host, username, store, timestamp_us);
-- Retention sweeps across all archives ("older than N days").
CREATE INDEX archive_by_timestamp ON archive (timestamp_us);
