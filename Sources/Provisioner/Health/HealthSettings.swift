import Foundation

/// `[health]`: how the agent checks every tenant (`desa-agent`, `desactl health --now`),
/// and what it repairs and renews on its own.
public struct HealthSettings: ConfigSection {
    public static let name = "health"

    @Setting("interval", "seconds between the agent's sweeps")
    public var interval = 60
    @Setting("timeout", "seconds one check may take; a tenant that hangs is down after this long and delays no other")
    public var timeout = 5.0
    @Setting("concurrency", "tenants checked at once")
    public var concurrency = 64
    @Setting("certificate_warning_days", "a certificate with fewer days left is degraded")
    public var certificateWarningDays = 14
    @Setting("disk_warning_percent", "free space (percent) of the web root's or state directory's file system under which it is degraded")
    public var diskWarningPercent = 10.0
    @Setting("disk_down_percent", "free space (percent) under which it is down")
    public var diskDownPercent = 2.0
    @Setting("history", "changes of state kept in the state database")
    public var history = HealthStore.defaultHistoryLimit
    @Setting("repair_drift", "true: the agent runs desactl apply when a sweep finds drift; false: drift is only reported")
    public var repairDrift = false
    @Setting("renew_interval", "seconds between the agent's certificate renewals when [tls] is on; 0: none")
    public var renewInterval = 3600

    public init() {}

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

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
