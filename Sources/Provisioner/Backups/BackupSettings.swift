import Foundation

/// `[backup]`: nightly backups of every tenant with restic, into one repository per server.
public struct BackupSettings: ConfigSection {
    public static let name = "backup"

    @Setting("repository", "the restic repository (a local path, sftp:, rest: or s3:); \"\": backups off")
    public var repository = ""
    @Setting("password_file", "the repository's password, a 0600 file (desactl backup init makes it); \"\": state_dir/backup-password. Lost password, lost backups", .path)
    public var passwordFile: String? = nil
    @Setting("restic", "the restic program", .path)
    public var restic = "/usr/bin/restic"
    @Setting("staging_dir", "where each tenant's dump and record wait for restic, and restores are unpacked (root only, never inside a tenant's quota); \"\": state_dir/backup", .path)
    public var stagingDir: String? = nil
    @Setting("parallel", "tenants backed up at once (each is a restic call of about 0.4 s, 1 s without the light key)")
    public var parallel = 2
    @Setting("time", "when the agent's nightly run starts, HH:MM local time")
    public var time = "01:30"
    @Setting("random_delay", "seconds of random delay added to the nightly run, so a regency's servers do not all start at once")
    public var randomDelay = 1800
    @Setting("forget_after_run", "after the nightly run, apply the retention (restic forget --prune); false for an append-only repository, whose owner prunes it")
    public var forgetAfterRun = true
    @Setting("keep_daily", "snapshots kept per tenant: one per day for this many days")
    public var keepDaily = 7
    @Setting("keep_weekly", "... one per week for this many weeks")
    public var keepWeekly = 4
    @Setting("keep_monthly", "... one per month for this many months")
    public var keepMonthly = 6
    @Setting("degraded_after_hours", "a tenant whose last good backup is older than this is degraded")
    public var degradedAfterHours = 26
    @Setting("down_after_hours", "... and down past this (or when its last backup failed)")
    public var downAfterHours = 50
    @Setting("verify_read_percent", "backup verify reads this percent of the repository's data back (restic check --read-data-subset)")
    public var verifyReadPercent = 5
    @Setting("drill_tenants", "backup verify restores this many tenants, picked at random, into scratch space and compares them")
    public var drillTenants = 2

    public init() {}
    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public var enabled: Bool { !repository.isEmpty }

    /// `time` as hour and minute.
    public var hourMinute: (Int, Int)? {
        let p = time.split(separator: ":")
        guard p.count == 2, p.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isNumber) }), let h = Int(p[0]), let m = Int(p[1]),
              (0..<24).contains(h), (0..<60).contains(m) else { return nil }
        return (h, m)
    }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        guard hourMinute != nil else { throw fail("backup.time must be HH:MM, 00:00 to 23:59 (got \(Quote.show(time)))") }
        guard (1...32).contains(parallel) else { throw fail("backup.parallel must be 1 to 32 (got \(parallel))") }
        guard (0...86_400).contains(randomDelay) else { throw fail("backup.random_delay must be 0 to 86400 seconds (got \(randomDelay))") }
        for (k, v) in [("keep_daily", keepDaily), ("keep_weekly", keepWeekly), ("keep_monthly", keepMonthly)] where !(0...1000).contains(v) {
            throw fail("backup.\(k) must be 0 to 1000 (got \(v))")
        }
        guard keepDaily + keepWeekly + keepMonthly > 0 else { throw fail("backup: keep_daily, keep_weekly and keep_monthly cannot all be 0 (forget would remove every snapshot)") }
        guard degradedAfterHours >= 1, downAfterHours > degradedAfterHours else {
            throw fail("backup.down_after_hours (\(downAfterHours)) must be more than backup.degraded_after_hours (\(degradedAfterHours)), which must be at least 1")
        }
        guard (1...100).contains(verifyReadPercent) else { throw fail("backup.verify_read_percent must be 1 to 100 (got \(verifyReadPercent))") }
        guard (0...100).contains(drillTenants) else { throw fail("backup.drill_tenants must be 0 to 100 (got \(drillTenants))") }
        if repository.contains("\n") || repository.contains("\0") { throw fail("backup.repository must be one line") }
        if repository.hasPrefix("/") && repository.hasPrefix(config.webRoot + "/") {
            throw fail("backup.repository \(repository) lies in the web root, where tenants live")
        }
    }
}

extension Config {
    /// `[backup]`, the backups capability's section.
    public var backup: BackupSettings {
        get { section(BackupSettings.self) }
        set { set(newValue) }
    }

    public var backupPasswordFile: String { backup.passwordFile ?? stateDir + "/backup-password" }
    public var backupStagingDir: String { backup.stagingDir ?? stateDir + "/backup" }
}
