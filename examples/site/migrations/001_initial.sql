-- Runtime settings that editors change on the running site, and the contact form's inbox.
-- A delivery never overwrites an editor's setting: the default title is inserted only once.
CREATE TABLE IF NOT EXISTS site_settings (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz
);

INSERT INTO site_settings (key, value, updated_at)
VALUES ('site_title', 'Siteline example site', now())
ON CONFLICT (key) DO NOTHING;

CREATE TABLE IF NOT EXISTS contact_messages (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    phone text,
    message text NOT NULL,
    created_at timestamptz DEFAULT now()
);
