import Foundation

/// Something that happened at the CA and counts against its rate limits. Stored as rows
/// (the `Codable` form is flat: `time`, `kind`, `names`, `renewalWithARI`).
public struct LedgerEvent: Sendable, Equatable, Hashable, Codable {
    public enum Kind: Sendable, Equatable, Hashable {
        /// A new order was created. An order carrying ARI `replaces` is exempt from the
        /// new-orders limit and does not count.
        case order(renewalWithARI: Bool = false)
        /// A certificate was issued for these names.
        case certificate(names: [String], renewalWithARI: Bool)
        /// An authorization for this name failed.
        case authorizationFailure(name: String)
    }

    public var time: Date
    public var kind: Kind

    public init(time: Date, kind: Kind) {
        self.time = time
        self.kind = kind
    }

    private enum CodingKeys: String, CodingKey { case time, kind, names, renewalWithARI }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        time = try c.decode(Date.self, forKey: .time)
        let k = try c.decode(String.self, forKey: .kind)
        let names = try c.decodeIfPresent([String].self, forKey: .names) ?? []
        let ari = try c.decodeIfPresent(Bool.self, forKey: .renewalWithARI) ?? false
        switch k {
        case "order": kind = .order(renewalWithARI: ari)
        case "certificate": kind = .certificate(names: names, renewalWithARI: ari)
        case "authorizationFailure":
            guard names.count == 1 else {
                throw DecodingError.dataCorruptedError(forKey: .names, in: c, debugDescription: "an authorizationFailure row names exactly one identifier, this one has \(names.count)")
            }
            kind = .authorizationFailure(name: names[0])
        default:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown ledger event kind \(k)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(time, forKey: .time)
        switch kind {
        case .order(let ari):
            try c.encode("order", forKey: .kind)
            try c.encode([String](), forKey: .names)
            try c.encode(ari, forKey: .renewalWithARI)
        case .certificate(let names, let ari):
            try c.encode("certificate", forKey: .kind)
            try c.encode(names, forKey: .names)
            try c.encode(ari, forKey: .renewalWithARI)
        case .authorizationFailure(let name):
            try c.encode("authorizationFailure", forKey: .kind)
            try c.encode([name], forKey: .names)
            try c.encode(false, forKey: .renewalWithARI)
        }
    }
}

/// Capacities and refill intervals of the limits the ledger keeps under.
public struct Budget: Sendable, Equatable, Hashable, Codable {
    /// A token bucket: `capacity` tokens, one more every `refillInterval` seconds; its
    /// window (capacity × interval) is the period the CA's limit is stated over.
    public struct Limit: Sendable, Equatable, Hashable, Codable {
        public var capacity: Int
        public var refillInterval: TimeInterval

        /// `capacity` is at least 1.
        public init(capacity: Int, refillInterval: TimeInterval) {
            self.capacity = max(1, capacity)
            self.refillInterval = max(0, refillInterval)
        }

        /// `capacity` per `window`, refilling evenly (50 per 7 days: one per 201.6 min).
        public init(_ capacity: Int, per window: TimeInterval) {
            self.init(capacity: capacity, refillInterval: window / Double(max(1, capacity)))
        }

        public var window: TimeInterval { Double(capacity) * refillInterval }
    }

    /// Exponential backoff for a held-out name: `base`, doubling per consecutive failure,
    /// at most `cap`.
    public struct Backoff: Sendable, Equatable, Hashable, Codable {
        public var base: TimeInterval
        public var cap: TimeInterval
        public init(base: TimeInterval, cap: TimeInterval) {
            self.base = base
            self.cap = cap
        }

        /// The wait after the `failures`-th consecutive failure (1 → base).
        public func delay(afterFailures failures: Int) -> TimeInterval {
            guard failures > 0 else { return 0 }
            let doublings = min(failures - 1, 62)
            return min(base * pow(2, Double(doublings)), cap)
        }
    }

    /// New certificates per registered domain (global across accounts at the CA).
    public var certificatesPerRegisteredDomain: Limit
    /// New orders per account.
    public var ordersPerAccount: Limit
    /// Certificates for exactly the same set of names.
    public var duplicateCertificates: Limit
    /// Authorization failures per identifier per account. Enforced as a sliding window
    /// (at most `capacity` failures in any `window`), stricter than the CA's bucket.
    public var authorizationFailuresPerIdentifier: Limit
    /// Waits between retries of a held-out name.
    public var retryBackoff: Backoff

    public init(certificatesPerRegisteredDomain: Limit, ordersPerAccount: Limit, duplicateCertificates: Limit,
                authorizationFailuresPerIdentifier: Limit, retryBackoff: Backoff) {
        self.certificatesPerRegisteredDomain = certificatesPerRegisteredDomain
        self.ordersPerAccount = ordersPerAccount
        self.duplicateCertificates = duplicateCertificates
        self.authorizationFailuresPerIdentifier = authorizationFailuresPerIdentifier
        self.retryBackoff = retryBackoff
    }

    static let hour: TimeInterval = 3600
    static let day: TimeInterval = 86400

    /// Let's Encrypt's published limits (2025), exactly: 50 certificates per registered
    /// domain per 7 days, 300 orders per account per 3 hours, 5 duplicates per 7 days,
    /// 5 authorization failures per identifier per hour; backoff 1 h doubling to 1 week.
    public static let letsEncrypt = Budget(
        certificatesPerRegisteredDomain: Limit(50, per: 7 * day),
        ordersPerAccount: Limit(300, per: 3 * hour),
        duplicateCertificates: Limit(5, per: 7 * day),
        authorizationFailuresPerIdentifier: Limit(5, per: hour),
        retryBackoff: Backoff(base: hour, cap: 7 * day))

    /// Let's Encrypt's limits with a margin, for certificates issued by others on the same
    /// registered domain and events lost between an order and its ledger row: 45 of 50
    /// per registered domain (one per 224 min), 270 of 300 orders (one per 40 s), 4 of 5
    /// duplicates, 4 of 5 failures per hour.
    public static let `default` = Budget(
        certificatesPerRegisteredDomain: Limit(45, per: 7 * day),
        ordersPerAccount: Limit(270, per: 3 * hour),
        duplicateCertificates: Limit(4, per: 7 * day),
        authorizationFailuresPerIdentifier: Limit(4, per: hour),
        retryBackoff: Backoff(base: hour, cap: 7 * day))
}

/// An order the planner wants placed.
public struct PlannedOrder: Sendable, Equatable, Hashable, Codable {
    public enum Purpose: String, Sendable, Equatable, Hashable, Codable {
        case renewal, issue, reissue, retry
    }

    /// The bundle id, or `retry:<name>` for a held-out name.
    public var id: String
    public var names: [String]
    public var purpose: Purpose
    /// How many tenants the certificate serves (priority among new bundles).
    public var tenantCount: Int
    /// For renewals: when the certificate fell due (earlier first).
    public var renewalDue: Date?
    /// The order carries ARI `replaces`: exempt from the new-orders and per-domain limits.
    public var replacesWithARI: Bool

    public init(id: String, names: [String], purpose: Purpose, tenantCount: Int,
                renewalDue: Date? = nil, replacesWithARI: Bool = false) {
        self.id = id
        self.names = names
        self.purpose = purpose
        self.tenantCount = tenantCount
        self.renewalDue = renewalDue
        self.replacesWithARI = replacesWithARI
    }
}

/// The limit that holds an order back.
public enum RateLimit: Sendable, Equatable, Hashable, CustomStringConvertible {
    case certificatesPerRegisteredDomain(String)
    case ordersPerAccount
    case duplicateCertificate
    case authorizationFailures(name: String)
    case retryBackoff(name: String, failures: Int)

    public var description: String {
        switch self {
        case .certificatesPerRegisteredDomain(let d): return "new certificates per registered domain \(d)"
        case .ordersPerAccount: return "new orders per account"
        case .duplicateCertificate: return "duplicate certificates (the same set of names)"
        case .authorizationFailures(let n): return "authorization failures for \(n)"
        case .retryBackoff(let n, let f): return "retry backoff for \(n) after \(f) consecutive failure\(f == 1 ? "" : "s")"
        }
    }
}

/// When an order may be placed.
public struct ScheduledOrder: Sendable, Equatable {
    public var order: PlannedOrder
    /// `now`, or the time it is queued until.
    public var at: Date
    /// The limit that pushed it past `now` (the latest one, if several); nil when it can go now.
    public var delayedBy: RateLimit?

    public var isQueued: Bool { delayedBy != nil }
}

/// How much of a bucket is used, for `desactl cert budget`.
public struct BucketUsage: Sendable, Equatable {
    /// The registered domain (or "account" for the orders bucket).
    public var key: String
    public var capacity: Int
    /// Events counted in the last window (capacity × refill interval).
    public var usedInWindow: Int
    /// Tokens available now.
    public var remaining: Int
    /// When the next token arrives (nil when the bucket is full).
    public var nextRefill: Date?
}

/// The CA's rate limits, replayed from the history of what was ordered, issued and
/// failed, and used to schedule the orders a plan calls for.
///
/// Buckets are GCRA token buckets like Let's Encrypt's: each keeps a "theoretical arrival
/// time" `tat`; an event at `t` moves it to `max(tat, t) + interval`; a new event is
/// allowed at `t` when `max(tat, t) + interval - t <= capacity × interval`, i.e. from
/// `tat - (capacity - 1) × interval` on.
///
/// - Certificates per registered domain: a certificate counts once against each
///   registered domain among its names (`PublicSuffixList.rateLimitKey`), unless it is an
///   ARI renewal.
/// - Orders per account: every order, unless it carries ARI `replaces`.
/// - Duplicates: per exact set of names (case-insensitive, order ignored); ARI renewals
///   count too (conservative).
/// - Authorization failures per identifier: a sliding window (never more than `capacity`
///   failures in any `window`), checked for every name of every order, since the CA
///   refuses a new order for an identifier over this limit.
/// - Retries of a held-out name wait `retryBackoff.delay(afterFailures: k)` after the
///   last of its `k` consecutive failures (those since the last certificate naming it).
///
/// Scheduling takes the orders in priority order — renewals (earliest due first), then
/// new and grown bundles (most tenants first), then retries (by name); ties by id — and
/// gives each the earliest time every bucket it draws on has a token, then consumes them.
/// An order scheduled later in the list sees the consumption of those before it even when
/// they go later in time; that only ever makes it wait longer, never plans an order the
/// CA's bucket would refuse.
public struct IssuanceLedger: Sendable, Equatable {
    public let budget: Budget
    public let suffixes: PublicSuffixList
    public private(set) var history: [LedgerEvent]

    private struct Bucket: Sendable, Equatable {
        var tat: Date
        var times: [Date]  // events, ascending
    }

    private var domains: [String: Bucket] = [:]
    private var orders = Bucket(tat: .distantPast, times: [])
    private var duplicates: [String: Bucket] = [:]
    private var failures: [String: [Date]] = [:]
    /// name -> (consecutive failures, last failure)
    private var streaks: [String: (count: Int, last: Date)] = [:]
    private var lastTime: Date = .distantPast

    public init(history: [LedgerEvent], budget: Budget = .default, suffixes: PublicSuffixList) {
        self.budget = budget
        self.suffixes = suffixes
        self.history = []
        for e in IssuanceLedger.ordered(history) { apply(e) }
    }

    public static func == (a: IssuanceLedger, b: IssuanceLedger) -> Bool {
        a.budget == b.budget && a.suffixes == b.suffixes && a.history == b.history
    }

    /// Events by time; at equal times failures before certificates (a certificate then
    /// ends the streak), the rest in a fixed order so the input order never matters.
    private static func ordered(_ events: [LedgerEvent]) -> [LedgerEvent] {
        func rank(_ k: LedgerEvent.Kind) -> Int {
            switch k { case .order: 0; case .authorizationFailure: 1; case .certificate: 2 }
        }
        return events.sorted {
            if $0.time != $1.time { return $0.time < $1.time }
            if rank($0.kind) != rank($1.kind) { return rank($0.kind) < rank($1.kind) }
            return String(describing: $0.kind) < String(describing: $1.kind)
        }
    }

    /// Adds an event (as the caller also stores its row).
    public mutating func record(_ event: LedgerEvent) {
        if event.time >= lastTime {
            apply(event)
        } else {
            self = IssuanceLedger(history: history + [event], budget: budget, suffixes: suffixes)
        }
    }

    private static func consume(_ b: inout Bucket, at t: Date, _ limit: Budget.Limit) {
        b.tat = max(b.tat, t).addingTimeInterval(limit.refillInterval)
        b.times.append(t)
    }

    private static func earliest(_ b: Bucket?, _ limit: Budget.Limit, from now: Date) -> Date {
        guard let b else { return now }
        return max(now, b.tat.addingTimeInterval(-Double(limit.capacity - 1) * limit.refillInterval))
    }

    private static func normalized(_ name: String) -> String {
        PublicSuffixList.normalize(name) ?? Punycode.asciiLowercased(name)
    }

    private static func setKey(_ names: [String]) -> String {
        Set(names.map(normalized)).sorted().joined(separator: ",")
    }

    private func domainKeys(_ names: [String]) -> [String] {
        Set(names.map { suffixes.rateLimitKey(for: $0) ?? IssuanceLedger.normalized($0) }).sorted()
    }

    private mutating func apply(_ e: LedgerEvent) {
        history.append(e)
        lastTime = max(lastTime, e.time)
        switch e.kind {
        case .order(let ari):
            if !ari { IssuanceLedger.consume(&orders, at: e.time, budget.ordersPerAccount) }
        case .certificate(let names, let ari):
            if !ari {
                for d in domainKeys(names) {
                    IssuanceLedger.consume(&domains[d, default: Bucket(tat: .distantPast, times: [])], at: e.time,
                                           budget.certificatesPerRegisteredDomain)
                }
            }
            IssuanceLedger.consume(&duplicates[IssuanceLedger.setKey(names), default: Bucket(tat: .distantPast, times: [])],
                                   at: e.time, budget.duplicateCertificates)
            for n in names { streaks[IssuanceLedger.normalized(n)] = nil }
        case .authorizationFailure(let name):
            let n = IssuanceLedger.normalized(name)
            failures[n, default: []].append(e.time)
            let prior = streaks[n]?.count ?? 0
            streaks[n] = (prior + 1, e.time)
        }
    }

    /// When each order can be placed, in priority order (see the type's documentation).
    public func schedule(orders planned: [PlannedOrder], now: Date) -> [ScheduledOrder] {
        var domains = self.domains
        var orders = self.orders
        var duplicates = self.duplicates
        let failureLimit = budget.authorizationFailuresPerIdentifier

        func priority(_ o: PlannedOrder) -> (Int, Double, Int, String) {
            switch o.purpose {
            case .renewal: return (0, (o.renewalDue ?? .distantPast).timeIntervalSinceReferenceDate, 0, o.id)
            case .issue, .reissue: return (1, 0, -o.tenantCount, o.id)
            case .retry: return (2, 0, 0, o.id)
            }
        }
        let queue = planned.sorted { priority($0) < priority($1) }

        var out: [ScheduledOrder] = []
        out.reserveCapacity(queue.count)
        for o in queue {
            let exempt = o.replacesWithARI
            var at = now
            var reason: RateLimit?
            func consider(_ t: Date, _ r: RateLimit) {
                if t > at { at = t; reason = r }
            }
            let names = o.names.map(IssuanceLedger.normalized)
            // Retry backoff.
            if o.purpose == .retry {
                for n in names {
                    if let s = streaks[n] {
                        consider(s.last.addingTimeInterval(budget.retryBackoff.delay(afterFailures: s.count)),
                                 .retryBackoff(name: n, failures: s.count))
                    }
                }
            }
            // Authorization failures: fewer than `capacity` in the window ending at `at`.
            for n in names {
                if let f = failures[n], f.count >= failureLimit.capacity {
                    consider(f[f.count - failureLimit.capacity].addingTimeInterval(failureLimit.window),
                             .authorizationFailures(name: n))
                }
            }
            let dupKey = IssuanceLedger.setKey(o.names)
            consider(IssuanceLedger.earliest(duplicates[dupKey], budget.duplicateCertificates, from: now), .duplicateCertificate)
            let keys = exempt ? [] : domainKeys(o.names)
            if !exempt {
                consider(IssuanceLedger.earliest(orders, budget.ordersPerAccount, from: now), .ordersPerAccount)
                for d in keys {
                    consider(IssuanceLedger.earliest(domains[d], budget.certificatesPerRegisteredDomain, from: now),
                             .certificatesPerRegisteredDomain(d))
                }
            }
            // Consume.
            IssuanceLedger.consume(&duplicates[dupKey, default: Bucket(tat: .distantPast, times: [])], at: at,
                                   budget.duplicateCertificates)
            if !exempt {
                IssuanceLedger.consume(&orders, at: at, budget.ordersPerAccount)
                for d in keys {
                    IssuanceLedger.consume(&domains[d, default: Bucket(tat: .distantPast, times: [])], at: at,
                                           budget.certificatesPerRegisteredDomain)
                }
            }
            out.append(ScheduledOrder(order: o, at: at, delayedBy: at > now ? reason : nil))
        }
        return out
    }

    private static func usage(_ key: String, _ b: Bucket?, _ limit: Budget.Limit, now: Date) -> BucketUsage {
        guard let b else {
            return BucketUsage(key: key, capacity: limit.capacity, usedInWindow: 0, remaining: limit.capacity, nextRefill: nil)
        }
        let since = now.addingTimeInterval(-limit.window)
        let used = b.times.reduce(0) { $0 + ($1 > since && $1 <= now ? 1 : 0) }
        let debt = max(0, b.tat.timeIntervalSince(now))
        let remaining: Int
        if limit.refillInterval <= 0 {
            remaining = limit.capacity
        } else {
            // A small tolerance keeps exact multiples from flooring one short.
            remaining = min(limit.capacity, max(0, Int(((limit.window - debt) / limit.refillInterval + 1e-9).rounded(.down))))
        }
        let next = remaining < limit.capacity
            ? b.tat.addingTimeInterval(-Double(limit.capacity - remaining - 1) * limit.refillInterval) : nil
        return BucketUsage(key: key, capacity: limit.capacity, usedInWindow: used, remaining: remaining, nextRefill: next)
    }

    /// Per registered domain with any recorded certificate: used in the window, tokens
    /// left now, and when the next arrives. Sorted by domain.
    public func usage(now: Date) -> [BucketUsage] {
        domains.keys.sorted().map { IssuanceLedger.usage($0, domains[$0], budget.certificatesPerRegisteredDomain, now: now) }
    }

    /// The same for one registered domain (full when nothing was recorded for it).
    public func usage(ofRegisteredDomain domain: String, now: Date) -> BucketUsage {
        let key = suffixes.rateLimitKey(for: domain) ?? domain
        return IssuanceLedger.usage(key, domains[key], budget.certificatesPerRegisteredDomain, now: now)
    }

    /// The account's new-orders bucket.
    public func orderUsage(now: Date) -> BucketUsage {
        IssuanceLedger.usage("account", orders, budget.ordersPerAccount, now: now)
    }

    /// Consecutive authorization failures of a name since the last certificate naming it.
    public func consecutiveFailures(of name: String) -> Int {
        streaks[IssuanceLedger.normalized(name)]?.count ?? 0
    }
}
