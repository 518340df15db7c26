-- The change log the search mirror is fed from: one row per notification, at the position of its
-- latest change (creation, a status move, its counts moving, a revoke). A change deletes the
-- notification's row and inserts a new one, and AUTOINCREMENT never hands a position out twice,
-- so a reader that applied position p misses nothing by reading above p.
CREATE TABLE search_changes (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT    NOT NULL UNIQUE
);

-- Notifications stored before the log existed, oldest first.
INSERT INTO search_changes (notification_id) SELECT id FROM notifications ORDER BY created_at, id;
