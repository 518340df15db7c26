-- Receiver preferences (issue #13): one row per receiver and category it opted out of (never per
-- message). `system` is never stored: critical messages reach everyone.
CREATE TABLE receiver_preferences (
    kind     TEXT NOT NULL,
    id       TEXT NOT NULL,
    category TEXT NOT NULL,
    PRIMARY KEY (kind, id, category)
) WITHOUT ROWID;
-- A preview counts a category's opted out from here (few rows), not from every receiver matched.
CREATE INDEX receiver_preferences_by_category ON receiver_preferences (kind, category, id);

-- Receivers a (notification, city) left out because they opted out of its category: an include
-- list's at the start, a selection's added by each paging step with the page it wrote.
ALTER TABLE send_tasks ADD COLUMN opted_out INTEGER NOT NULL DEFAULT 0;
