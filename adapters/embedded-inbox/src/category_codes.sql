-- Categories are kept as small integer codes, 0 'system', 1 'activity', 2 'announcement' (their
-- order in `Category::ALL`), in `notifications` and in the entries' primary key. SQLite stores 0
-- and 1 in no bytes at all and 2 in one, where the name took up to 13: the key of every delivered
-- entry shrinks by that much, and with it the B-tree a fan-out writes (measured: text in the key
-- cost ≈ 12 % of a 1M-entry write, codes cost nothing over no category). The tables are rebuilt
-- because a column's type cannot be changed in place; their rows are kept.

CREATE TABLE notifications_coded (
    notification_id TEXT    NOT NULL PRIMARY KEY,
    category        INTEGER NOT NULL,  -- 0 system, 1 activity, 2 announcement
    pinned          INTEGER NOT NULL,
    force_read      INTEGER NOT NULL,
    sent_ms         INTEGER NOT NULL,
    valid_from_ms   INTEGER,
    valid_until_ms  INTEGER,
    last_version    INTEGER NOT NULL DEFAULT 0,
    archived        INTEGER NOT NULL DEFAULT 0,
    seq             INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO notifications_coded
    SELECT notification_id, CASE category WHEN 'system' THEN 0 WHEN 'activity' THEN 1 ELSE 2 END, pinned,
           force_read, sent_ms, valid_from_ms, valid_until_ms, last_version, archived, seq
    FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_coded RENAME TO notifications;
CREATE INDEX notifications_by_opening ON notifications (valid_from_ms) WHERE valid_from_ms IS NOT NULL;
CREATE INDEX notifications_by_arrival ON notifications (last_version);

CREATE TABLE entries_coded (
    receiver        TEXT    NOT NULL,
    category        INTEGER NOT NULL,  -- its notification's code
    rank            INTEGER NOT NULL,
    sent_ms         INTEGER NOT NULL,
    notification_id TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    read            INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (receiver, category, rank, sent_ms, notification_id)
) WITHOUT ROWID;
INSERT INTO entries_coded
    SELECT receiver, CASE category WHEN 'system' THEN 0 WHEN 'activity' THEN 1 ELSE 2 END, rank, sent_ms,
           notification_id, version, read
    FROM entries;
DROP TABLE entries;
ALTER TABLE entries_coded RENAME TO entries;
CREATE INDEX entries_changed_by_version ON entries (receiver, version) WHERE read = 1 OR rank = -1;
