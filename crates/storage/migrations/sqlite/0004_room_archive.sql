-- Room archives (the Archive store `muc_archive`, see xmppd_core::storage::ROOM_ARCHIVE) move
-- out of `archive` into a table of their own. A row of `archive` wrote its table page, four
-- index pages and the usage row of a per-row trigger, each a page of the write-ahead log per
-- commit; a busy room's messages cost that many times more than their payload. Here a row
-- appends to the table's last page (ids only grow) and to two narrow per-room indexes: the
-- room's id order, and time (MAM `start`/`end`: a client catching up asks by time, and age
-- trims). Rooms trim their own archives on append, so no index serves retention across
-- archives. `with` (an occupant JID, XEP-0313 §4.1.1: only for those allowed to know the
-- publisher, and rarely asked) has no index: its query walks the room's ids, stopping once
-- it has its page; an index would put a write point per active occupant into every commit
-- (it doubled the cost of a row). Usage totals grow once per room and commit, in the code;
-- deletes keep them by the trigger below.
--
-- Ids stay in one space with `archive`: the room table takes its ids from the sequence of
-- `archive`'s AUTOINCREMENT (sqlite_sequence), so an id is never reused and never names
-- records of two archives. Moved records keep their ids: clients hold them as stanza-ids.

CREATE TABLE room_archive (
    id           INTEGER PRIMARY KEY,
    host         TEXT NOT NULL,
    room         TEXT NOT NULL,
    with_jid     TEXT NOT NULL,
    timestamp_us INTEGER NOT NULL,
    payload      BLOB NOT NULL
);

-- Paging, counting and clearing one room's archive.
CREATE INDEX room_archive_by_id ON room_archive (host, room, id);
-- Filtering by time (MAM `start`/`end`) and age trims.
CREATE INDEX room_archive_by_time ON room_archive (host, room, timestamp_us);

-- The id sequence exists even if `archive` never had a row.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'archive', COALESCE((SELECT MAX(id) FROM archive), 0)
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'archive');

INSERT INTO room_archive (id, host, room, with_jid, timestamp_us, payload)
SELECT id, host, username, with_jid, timestamp_us, payload
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
