-- What an AI agent's call said, both sides as the provider transcribed them (a JSON array of
-- {at_ms, speaker, text}), and the provider's usage summed over the call (JSON).
ALTER TABLE calls ADD COLUMN transcript TEXT;
ALTER TABLE calls ADD COLUMN usage TEXT;
