"""One router per resource; each route translates HTTP to a call into the logic modules."""
