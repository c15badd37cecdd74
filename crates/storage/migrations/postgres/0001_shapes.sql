-- The three storage shapes (see xmppd_core::storage). Every feature shares these tables,
-- keyed by (host, username, store); there is no table per feature.
-- Text columns use the "C" collation so that ORDER BY is code point order, independent of the
-- cluster's locale and identical to SQLite's BINARY collation.

-- KeyVal: one document per (host, username, store).
CREATE TABLE keyval (
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    value    BYTEA NOT NULL,
    PRIMARY KEY (host, username, store)
);

-- KeyVal::users(host, store) lists users per store.
CREATE INDEX keyval_by_store ON keyval (host, store, username);

-- Map: many items per (host, username, store).
CREATE TABLE map (
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    item_key TEXT COLLATE "C" NOT NULL,
    value    BYTEA NOT NULL,
    PRIMARY KEY (host, username, store, item_key)
);

-- Archive: time-ordered records. Identity values are never reused.
CREATE TABLE archive (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host         TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL,
    store        TEXT COLLATE "C" NOT NULL,
    with_jid     TEXT COLLATE "C" NOT NULL,
    timestamp_us BIGINT NOT NULL,
    payload      BYTEA NOT NULL
);

-- Paging, counting and clearing one archive.
CREATE INDEX archive_by_id ON archive (host, username, store, id);
-- Filtering by the other party (MAM `with`).
CREATE INDEX archive_by_with ON archive (host, username, store, with_jid, id);
-- Filtering by time (MAM `start`/`end`).
CREATE INDEX archive_by_time ON archive (host, username, store, timestamp_us);
-- Retention sweeps across all archives ("older than N days").
CREATE INDEX archive_by_timestamp ON archive (timestamp_us);
