-- Variants and locales (issue #13): a notification's content per user group (a JSON array of
-- {groups, title, body, image, actions, locales}) and its title and body per locale (a JSON object
-- locale -> {title, body}), each NULL when it has none; stored once with the notification, never per
-- receiver. A receiver's locale (a language tag, `zh-CN`), NULL when the import gave none.
ALTER TABLE notifications ADD COLUMN variants TEXT;
ALTER TABLE notifications ADD COLUMN locales TEXT;
ALTER TABLE receivers ADD COLUMN locale TEXT;
