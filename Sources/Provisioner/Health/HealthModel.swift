import Foundation

/// How a check found its subject: ordered from best to worst, so `max` is the worst.
public enum HealthState: String, Sendable, Codable, Comparable, CaseIterable {
    case ok, degraded, down

    var rank: Int { switch self { case .ok: 0; case .degraded: 1; case .down: 2 } }
    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
}

/// What is checked, by name: an open set. The server's own checks are named here; each
/// capability names its tenant checks in its own folder (`HealthCheck.php` in Pools/),
/// and a name this build does not know (a check of a capability it lacks) is recorded,
/// shown and journaled like any other.
public struct HealthCheck: RawRepresentable, Hashable, Sendable, Codable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    /// The server differs from the state database for this tenant (what `apply` would do).
    public static let drift: HealthCheck = "drift"
    /// nginx's master runs.
    public static let nginx: HealthCheck = "nginx"
    /// php-fpm's masters run.
    public static let phpFPM: HealthCheck = "php-fpm"
    /// Free space where the web root and the state directory live.
    public static let disk: HealthCheck = "disk"
    /// The state database can be read.
    public static let stateDB: HealthCheck = "state-db"

    /// The server's checks, in the order they are shown after the tenants' own.
    public static let server: [HealthCheck] = [.drift, .nginx, .phpFPM, .disk, .stateDB]
}

/// One check's finding at one sweep.
public struct CheckOutcome: Sendable, Equatable {
    public var check: HealthCheck
    public var state: HealthState
    /// Why it is not ok (empty when ok).
    public var reason: String
    public var duration: Duration
    /// A figure the check measured (a certificate's days left, a quota's percent), for its
    /// capability's metrics.
    public var value: Double?
    /// Fields its journal entry carries besides the usual ones (`DESA_QUOTA_PERCENT`).
    public var fields: [String: String] = [:]

    public init(_ check: HealthCheck, _ state: HealthState, _ reason: String = "", duration: Duration = .zero, value: Double? = nil) {
        self.check = check; self.state = state; self.reason = reason; self.duration = duration; self.value = value
    }
}

/// A check's recorded state: since when it has been in it (its last change), and when
/// it was last looked at.
public struct CheckStatus: Sendable, Equatable {
    /// A village code, or "" for the server.
    public var subject: String
    public var check: HealthCheck
    public var state: HealthState
    public var reason: String
    public var since: Date
    public var checkedAt: Date
}

/// A change of a check's state, as the journal and the history record it.
public struct HealthTransition: Sendable, Equatable {
    public var subject: String
    public var check: HealthCheck
    /// nil: never checked before.
    public var previous: HealthState?
    public var state: HealthState
    public var reason: String
    public var at: Date
    /// The outcome's own journal fields.
    public var fields: [String: String] = [:]

    public var isServer: Bool { subject.isEmpty }
}

/// The journal's MESSAGE_IDs, one per kind of event; `systemd/desa.catalog` explains
/// each (`journalctl -x`). Fixed for ever: monitoring filters on them.
public enum HealthMessageID {
    public static let down = "550a6e61861143fc81163ff47f653440"
    public static let degraded = "652b5ffc46504f94bb1bc5b47890b9b0"
    public static let recovered = "0fb3bfa9ec9d403cb268ea3697577a43"
    public static let serverProblem = "274b339d46c74ab6a90ddba4fca3a296"
    public static let serverRecovered = "253df0a7ca88424cb87cb8343a3f964e"

    public static func of(_ t: HealthTransition) -> String {
        if t.isServer { return t.state == .ok ? serverRecovered : serverProblem }
        switch t.state {
        case .ok: return recovered
        case .degraded: return degraded
        case .down: return down
        }
    }
}

/// A tenant's health as a sweep found it.
public struct TenantHealth: Sendable, Equatable {
    public var code: String
    public var slug: String
    public var outcomes: [CheckOutcome]

    public init(code: String, slug: String, outcomes: [CheckOutcome]) {
        self.code = code; self.slug = slug; self.outcomes = outcomes
    }

    public var state: HealthState { outcomes.map(\.state).max() ?? .ok }

    /// The figure a check measured for this tenant, if it did.
    public func value(of check: HealthCheck) -> Double? { outcomes.first { $0.check == check }?.value }
}

/// What a sweep found: every tenant, the server, and how long it took.
public struct SweepResult: Sendable, Equatable {
    public var tenants: [TenantHealth]
    public var server: [CheckOutcome]
    public var startedAt: Date
    public var duration: Duration
    /// Checks that could not run this sweep (their last state stands), e.g. drift while
    /// the state lock was held.
    public var skipped: [HealthCheck] = []

    public init(tenants: [TenantHealth], server: [CheckOutcome], startedAt: Date, duration: Duration) {
        self.tenants = tenants; self.server = server; self.startedAt = startedAt; self.duration = duration
    }

    public var counts: [HealthState: Int] {
        var c: [HealthState: Int] = [.ok: 0, .degraded: 0, .down: 0]
        for t in tenants { c[t.state, default: 0] += 1 }
        return c
    }

    public var serverState: HealthState { server.map(\.state).max() ?? .ok }

    /// `280 tenants: 276 ok, 3 degraded, 1 down`, and the server when it is not ok.
    public var summary: String {
        HealthSummary.line(tenants: tenants.count, counts: counts,
                           server: server.filter { $0.state != .ok }.map { "\($0.check.rawValue) \($0.state.rawValue)" })
    }
}

public enum HealthSummary {
    public static func line(tenants: Int, counts: [HealthState: Int], server: [String]) -> String {
        let n = tenants == 1 ? "1 tenant" : "\(tenants) tenants"
        var s = "\(n): \(counts[.ok] ?? 0) ok, \(counts[.degraded] ?? 0) degraded, \(counts[.down] ?? 0) down"
        if !server.isEmpty { s += "; server: " + server.joined(separator: ", ") }
        return s
    }
}
