-- Room archives (the Archive store `muc_archive`, see xmppd_core::storage::ROOM_ARCHIVE) move
-- out of `archive` into a table of their own, clustered by (host, room, id). A room's messages
-- are one append-only range: an insert writes the room's last leaf page and two narrow index
-- pages, where a row of `archive` wrote its table page, four index pages and the trigger's
-- usage row, each a page of the write-ahead log per commit. Room archives need no index for
-- retention across archives (rooms trim their own on append); `with` (an occupant JID) and
-- `start`/`end` keep an index each, per room.
--
-- Ids stay in one space with `archive`: the room table takes its ids from the sequence of
-- `archive`'s AUTOINCREMENT (sqlite_sequence), so an id is never reused and never names
-- records of two archives. Moved records keep their ids: clients hold them as stanza-ids.

CREATE TABLE room_archive (
    host         TEXT NOT NULL,
    room         TEXT NOT NULL,
    id           INTEGER NOT NULL,
    with_jid     TEXT NOT NULL,
    timestamp_us INTEGER NOT NULL,
    payload      BLOB NOT NULL,
    PRIMARY KEY (host, room, id)
) WITHOUT ROWID;

-- Filtering by occupant (MAM `with`).
CREATE INDEX room_archive_by_with ON room_archive (host, room, with_jid, id);
-- Filtering by time (MAM `start`/`end`) and age trims.
CREATE INDEX room_archive_by_time ON room_archive (host, room, timestamp_us);

-- The id sequence exists even if `archive` never had a row.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'archive', COALESCE((SELECT MAX(id) FROM archive), 0)
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'archive');

INSERT INTO room_archive (host, room, id, with_jid, timestamp_us, payload)
SELECT host, username, id, with_jid, timestamp_us, payload
FROM archive WHERE store = 'muc_archive';

-- Removing the moved rows runs `archive_usage_delete` once per row; the rooms' totals are
-- then set from the room table, which keeps them from here on (inserts in the code, per
-- batch and room; deletes by the trigger below).
DELETE FROM archive WHERE store = 'muc_archive';

UPDATE archive_usage
SET records = (SELECT COUNT(*) FROM room_archive AS r
               WHERE r.host = archive_usage.host AND r.room = archive_usage.username),
    bytes = (SELECT COALESCE(SUM(length(r.payload)), 0) FROM room_archive AS r
             WHERE r.host = archive_usage.host AND r.room = archive_usage.username)
WHERE store = 'muc_archive';

CREATE TRIGGER room_archive_usage_delete AFTER DELETE ON room_archive
BEGIN
    UPDATE archive_usage
    SET records = records - 1, bytes = bytes - length(OLD.payload)
    WHERE host = OLD.host AND username = OLD.room AND store = 'muc_archive';
END;
