import Foundation
import Testing
@testable import Provisioner

@Suite("Backups: settings and the backup check's judgement")
struct BackupSettingsTests {
    func tenant(created: Date) throws -> Tenant {
        let v = Village(code: try VillageCode("32.04.05.2001"), name: "Cileunyi Kulon", district: "Cileunyi")
        return Tenant(village: v, slug: "cileunyi-kulon", template: "default", php: "8.2", uid: 310_000, now: created)
    }

    @Test("bad [backup] values are refused with the key named")
    func validation() throws {
        for (toml, key) in [("time = \"25:00\"", "backup.time"), ("time = \"1:30\"", "backup.time"), ("parallel = 0", "backup.parallel"),
                            ("keep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0", "cannot all be 0"),
                            ("degraded_after_hours = 50\ndown_after_hours = 26", "backup.down_after_hours"),
                            ("verify_read_percent = 0", "backup.verify_read_percent")] {
            #expect(throws: DesaError.self, "\(toml)") { _ = try Config.parse("[backup]\n" + toml + "\n") }
            do { _ = try Config.parse("[backup]\n" + toml + "\n") } catch let e as DesaError { #expect(e.message.contains(key), "\(e.message)") }
        }
        let c = try Config.parse("[backup]\nrepository = \"/var/backups/desa\"\ntime = \"02:15\"\n")
        #expect(c.backup.enabled && c.backup.hourMinute! == (2, 15))
        #expect(c.backupPasswordFile == c.stateDir + "/backup-password" && c.backupStagingDir == c.stateDir + "/backup")
        #expect(!Config().backup.enabled, "backups are off until a repository is named")
    }

    @Test("the backup check: ok while fresh, degraded past 26 h, down past 50 h or after a failed attempt; a new village counts from its creation")
    func judge() throws {
        let now = Date(timeIntervalSince1970: 2_000_000_000), b = BackupSettings()
        let t = try tenant(created: now.addingTimeInterval(-100 * 3600))
        func record(_ hoursAgo: Double, _ outcome: String = "ok") -> BackupRecord {
            BackupRecord(code: t.code, lastAttemptAt: now, lastOutcome: outcome, lastError: outcome == "ok" ? nil : "dump failed",
                         lastSnapshot: "abc", lastSuccessAt: now.addingTimeInterval(-hoursAgo * 3600), bytesAdded: 0, sizeBytes: 0, files: 0)
        }
        #expect(BackupHealthCheck.judge(record(2), tenant: t, now: now, b).state == .ok)
        #expect(BackupHealthCheck.judge(record(2), tenant: t, now: now, b).value == 2)
        #expect(BackupHealthCheck.judge(record(27), tenant: t, now: now, b).state == .degraded)
        #expect(BackupHealthCheck.judge(record(51), tenant: t, now: now, b).state == .down)
        let failed = BackupHealthCheck.judge(record(1, "failed"), tenant: t, now: now, b)
        #expect(failed.state == .down && failed.reason.contains("dump failed"))
        #expect(BackupHealthCheck.judge(nil, tenant: t, now: now, b).state == .down, "never backed up in 100 hours")
        #expect(BackupHealthCheck.judge(nil, tenant: try tenant(created: now.addingTimeInterval(-3600)), now: now, b).state == .ok)
    }

    @Test("restic's nanosecond times are read")
    func times() {
        let d = Timestamp.parseRFC3339("2026-12-06T00:26:21.849449239Z")
        #expect(d.map { Int($0.timeIntervalSince1970) } == 1_796_516_781)
        #expect(Timestamp.parseRFC3339("2026-12-06T07:26:21.5+07:00").map { Int($0.timeIntervalSince1970) } == 1_796_516_781)
    }
}
