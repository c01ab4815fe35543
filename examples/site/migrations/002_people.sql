-- Personal data: a database refresh from live masks full_name, email and phone.
CREATE TABLE IF NOT EXISTS people (
    id bigserial PRIMARY KEY,
    full_name text NOT NULL,
    email text NOT NULL UNIQUE,
    phone text,
    created_at timestamptz DEFAULT now()
);
