-- Archives (issue #13): a row per receiver action, never per broadcast, as read receipts; un-archiving
-- deletes it. What `herald rebuild` restores archived inbox entries from.
CREATE TABLE archives (
    notification_id TEXT    NOT NULL,
    receiver_kind   TEXT    NOT NULL,
    receiver_id     TEXT    NOT NULL,
    archived_at     INTEGER NOT NULL,
    PRIMARY KEY (notification_id, receiver_kind, receiver_id)
);
-- Deleting a receiver deletes its archives.
CREATE INDEX archives_by_receiver ON archives (receiver_kind, receiver_id);
