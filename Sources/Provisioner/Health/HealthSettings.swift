import Foundation

/// `[health]`: how the agent checks every tenant (`desa-agent`, `desactl health --now`),
/// and what it repairs and renews on its own.
public struct HealthSettings: ConfigSection {
    public static let name = "health"

    /// Seconds between two sweeps of the agent.
    public var interval = 60
    /// Seconds one check may take (a connection, a TLS handshake, an answer); a tenant that
    /// hangs is down after this long, and delays no other tenant.
    public var timeout = 5.0
    /// How many tenants are checked at once.
    public var concurrency = 64
    /// A certificate with fewer days left than this is degraded (renewal should have
    /// happened by then).
    public var certificateWarningDays = 14
    /// Free space, in percent, under which the web root's or the state directory's file
    /// system is degraded, and under which it is down.
    public var diskWarningPercent = 10.0
    public var diskDownPercent = 2.0
    /// How many changes of state the state database keeps.
    public var history = HealthStore.defaultHistoryLimit
    /// Whether the agent repairs drift itself (a `desactl apply` after a sweep that
    /// found some); otherwise drift is only reported.
    public var repairDrift = false
    /// Seconds between the agent's certificate renewals (what `desactl cert renew --due`
    /// does), when `[tls]` is enabled; 0: the agent renews nothing.
    public var renewInterval = 3600

    public init() {}

    enum CodingKeys: String, CodingKey {
        case interval, timeout, concurrency, certificateWarningDays = "certificate_warning_days"
        case diskWarningPercent = "disk_warning_percent", diskDownPercent = "disk_down_percent", history
        case repairDrift = "repair_drift", renewInterval = "renew_interval"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = Self()
        interval = try c.value(.interval, or: d.interval)
        timeout = try c.value(.timeout, or: d.timeout)
        concurrency = try c.value(.concurrency, or: d.concurrency)
        certificateWarningDays = try c.value(.certificateWarningDays, or: d.certificateWarningDays)
        diskWarningPercent = try c.value(.diskWarningPercent, or: d.diskWarningPercent)
        diskDownPercent = try c.value(.diskDownPercent, or: d.diskDownPercent)
        history = try c.value(.history, or: d.history)
        repairDrift = try c.value(.repairDrift, or: d.repairDrift)
        renewInterval = try c.value(.renewInterval, or: d.renewInterval)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(interval, forKey: .interval)
        try c.encode(timeout, forKey: .timeout)
        try c.encode(concurrency, forKey: .concurrency)
        try c.encode(certificateWarningDays, forKey: .certificateWarningDays)
        try c.encode(diskWarningPercent, forKey: .diskWarningPercent)
        try c.encode(diskDownPercent, forKey: .diskDownPercent)
        try c.encode(history, forKey: .history)
        try c.encode(repairDrift, forKey: .repairDrift)
        try c.encode(renewInterval, forKey: .renewInterval)
    }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        guard interval >= 1 else { throw fail("health.interval must be at least 1 second (got \(interval))") }
        guard timeout > 0, timeout <= 300, timeout.isFinite else { throw fail("health.timeout must be more than 0 and at most 300 seconds (got \(timeout))") }
        guard (1...1024).contains(concurrency) else { throw fail("health.concurrency must be 1 to 1024 (got \(concurrency))") }
        guard certificateWarningDays >= 0 else { throw fail("health.certificate_warning_days must be 0 or more (got \(certificateWarningDays))") }
        guard (0...100).contains(diskDownPercent), (0...100).contains(diskWarningPercent), diskDownPercent <= diskWarningPercent else {
            throw fail("health.disk_down_percent and health.disk_warning_percent must be 0 to 100, down at most warning (got \(diskDownPercent) and \(diskWarningPercent))")
        }
        guard history >= 100 else { throw fail("health.history must be at least 100 changes (got \(history))") }
        guard renewInterval == 0 || renewInterval >= 60 else { throw fail("health.renew_interval must be 0 (off) or at least 60 seconds (got \(renewInterval))") }
    }
}

extension Config {
    public var health: HealthSettings { section(HealthSettings.self) }
}
