-- A message whose time is infinity or -infinity (Postgres accepts them in a timestamp column;
-- another program may write them) is rendered with that word as its time, instead of making
-- its whole JSON text NULL: to_char gives NULL for them, and a NULL element is left out of
-- the response body by string_agg, so the message went missing from every read.
CREATE OR REPLACE FUNCTION {{schema}}.rfc3339(t timestamp)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        rtrim(rtrim(to_char($1, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z',
        $1::text
    )
$$;
