-- The call's recording (a file name in RECORDINGS_DIR), set when recording began.
ALTER TABLE calls ADD COLUMN recording TEXT;
