"""bulkops: validate and write many Django objects at once, with a result per row."""
