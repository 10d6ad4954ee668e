-- Placeholder: number 0006 belongs to another branch (assigned by the lead); delete this file when that
-- branch's migration 0006 is merged. It only keeps the numbering gap-free on the firmware branch.
SELECT 1;
