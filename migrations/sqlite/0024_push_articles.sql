-- A push may send some of its campaign's articles: a JSON array of indexes into campaigns.articles
-- (NULL: all of them).
ALTER TABLE pushes ADD COLUMN articles TEXT;
