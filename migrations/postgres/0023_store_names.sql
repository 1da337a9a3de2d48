-- A store's Chinese name beside `name` (its English one, or its only one): followers read both,
-- Chinese first. NULL: the store has just the one name.
ALTER TABLE stores ADD COLUMN name_zh TEXT;
