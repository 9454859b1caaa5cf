-- GCRA (generic cell rate algorithm) for one budget, run atomically by
-- Redis. See doc.go for the algorithm and the key layout.
--
-- Every duration is a whole number of microseconds plus a number of
-- nanoseconds (0 to 999), so that no arithmetic here is ever rounded: Lua
-- numbers are doubles, exact for integers below 2^53, and every number here
-- (microseconds since 1970, plus at most 10 years) stays below 2^51.
--
-- KEYS[1]          the budget's key
-- ARGV[1]          "1": spend one request if the budget allows it; "0": only
--                  look; "2": give back one request (refund), never past a
--                  full budget
-- ARGV[2], ARGV[3] the emission interval T = Period / Requests: µs, ns
-- ARGV[4], ARGV[5] the span of a full budget C = Burst x T: µs, ns
--
-- The key holds "<TAT µs>:<TAT ns>", the theoretical arrival time in
-- server time. A request is allowed when max(TAT, now) + T - now <= C.
-- The key expires when its TAT is reached, since a full budget is the same
-- as no key.
--
-- Returns {allowed, dq, dr}: allowed is 1 or 0, and dq µs + dr ns is
-- max(TAT - now, 0) after the call, the time until the budget is full.

local spend = ARGV[1] == "1"
local tq, tr = tonumber(ARGV[2]), tonumber(ARGV[3])
local cq, cr = tonumber(ARGV[4]), tonumber(ARGV[5])

-- Server time, so that the clocks of the limiter's instances do not matter.
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- d = max(TAT - now, 0). A value this script did not write counts as none.
local dq, dr = 0, 0
local v = redis.call("GET", KEYS[1])
if v then
	local sep = string.find(v, ":", 1, true)
	if sep then
		local tat = tonumber(string.sub(v, 1, sep - 1))
		local num = tonumber(string.sub(v, sep + 1))
		if tat and num then
			tat = math.floor(tat)
			if tat >= now then
				dq = tat - now
				dr = math.min(math.max(math.floor(num), 0), 999)
			end
		end
	end
end

if ARGV[1] == "2" then
	-- Refund: d - T, or no key once that reaches a full budget.
	local q, r = dq - tq, dr - tr
	if r < 0 then
		q, r = q - 1, r + 1000
	end
	if q < 0 or (q == 0 and r == 0) then
		if v then
			redis.call("DEL", KEYS[1])
		end
		return {1, 0, 0}
	end
	redis.call("SET", KEYS[1], string.format("%d:%d", now + q, r), "PX", math.floor(q / 1000) + 1)
	return {1, q, r}
end

-- n = d + T: the distance to the TAT if one more request is spent.
local nq, nr = dq + tq, dr + tr
if nr >= 1000 then
	nq, nr = nq + 1, nr - 1000
end

local allowed = nq < cq or (nq == cq and nr <= cr)
if allowed and spend then
	-- Expire once the TAT has passed: rounded up to the next millisecond.
	redis.call("SET", KEYS[1], string.format("%d:%d", now + nq, nr), "PX", math.floor(nq / 1000) + 1)
	dq, dr = nq, nr
end

if allowed then
	return {1, dq, dr}
end
return {0, dq, dr}
