-- Receiver preferences (issue #13): one row per receiver and category it opted out of (never per
-- message). `system` is never stored: critical messages reach everyone.
CREATE TABLE receiver_preferences (
    kind     VARCHAR(16) NOT NULL,
    id       VARCHAR(64) NOT NULL,
    category VARCHAR(16) NOT NULL,
    PRIMARY KEY (kind, id, category),
    -- A preview counts a category's opted out from here (few rows), not from every receiver matched.
    KEY receiver_preferences_by_category (kind, category, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Receivers a (notification, city) left out because they opted out of its category: an include
-- list's at the start, a selection's added by each paging step with the page it wrote.
ALTER TABLE send_tasks ADD COLUMN opted_out BIGINT NOT NULL DEFAULT 0;
