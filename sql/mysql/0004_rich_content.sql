-- Rich content and templates (issue #13): a notification's image (an https URL) and action buttons
-- (a JSON array of {kind, target, label}), NULL when it has none; a receiver's attributes, the named
-- fields its title and body placeholders fill in (a JSON object of strings), NULL when it has none.
ALTER TABLE notifications ADD COLUMN image TEXT NULL, ADD COLUMN actions TEXT NULL;
ALTER TABLE receivers ADD COLUMN attributes TEXT NULL;
