-- Archives (issue #13): a row per receiver action, never per broadcast, as read receipts; un-archiving
-- deletes it. What `herald rebuild` restores archived inbox entries from.
CREATE TABLE archives (
    notification_id VARCHAR(64) NOT NULL,
    receiver_kind   VARCHAR(16) NOT NULL,
    receiver_id     VARCHAR(64) NOT NULL,
    archived_at     BIGINT      NOT NULL,
    PRIMARY KEY (notification_id, receiver_kind, receiver_id),
    -- Deleting a receiver deletes its archives.
    KEY archives_by_receiver (receiver_kind, receiver_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
