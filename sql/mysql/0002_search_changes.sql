-- The change log the search mirror is fed from: one row per notification, at the position of its
-- latest change (creation, a status move, its counts moving, a revoke). Positions come from
-- `log_heads` ('search_changes'), whose row the changing transaction holds locked until it commits,
-- so positions become visible in commit order and a reader that applied position p misses nothing
-- by reading above p.
CREATE TABLE search_changes (
    notification_id VARCHAR(64) NOT NULL PRIMARY KEY,
    position        BIGINT      NOT NULL,
    UNIQUE KEY search_changes_by_position (position)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Notifications stored before the log existed, oldest first.
INSERT INTO search_changes (notification_id, position)
    SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) FROM notifications;
INSERT INTO log_heads (name, position) SELECT 'search_changes', COUNT(*) FROM notifications;
