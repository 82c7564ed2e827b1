-- wrk script: every request is a different paste (new timestamp, PID, user, host) of one of a few errors
local errors = {
  "FATAL:  sorry, too many clients already",
  "FATAL:  remaining connection slots are reserved for non-replication superuser connections",
  "ERROR:  deadlock detected",
  "ERROR:  duplicate key value violates unique constraint \"orders_pkey\"",
  "ERROR:  canceling statement due to statement timeout",
  "FATAL:  password authentication failed for user \"app\"",
  "ERROR:  relation \"public.invoices\" does not exist",
  "ERROR:  could not serialize access due to concurrent update",
}
local n = 0
request = function()
  n = n + 1
  local e = errors[(n % #errors) + 1]
  local paste = string.format("2026-11-%02d %02d:%02d:%02d.%03d UTC [%d] u%d@db%d %s",
    (n % 28) + 1, n % 24, n % 60, (n * 7) % 60, n % 1000, 1000 + n, n % 50, n % 9, e)
  local q = paste:gsub("([^%w])", function(c) return string.format("%%%02X", string.byte(c)) end)
  return wrk.format("GET", "/api/v1/search?q=" .. q)
end
