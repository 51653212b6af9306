import Foundation
import Testing
@testable import Provisioner

/// Journal entries read back from a real systemd-journald, started privately by
/// Tests/support/with-journald (a mount namespace over /run/systemd/journal).
@Suite("Journal: structured entries in a real journald", .serialized)
struct JournalTests {
    static let harness = Support.packageRoot.appendingPathComponent("Tests/support/with-journald").path

    func entries(_ dir: String, _ match: String) throws -> [[String: Any]] {
        let r = try SystemProcessRunner().run(["/usr/bin/journalctl", "-D", dir, match, "-o", "json", "--no-pager"])
        try #require(r.ok, "journalctl: \(r.message)")
        return r.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    @Test("each mutating command writes DESA_TENANT, DESA_OP, PRIORITY and a readable MESSAGE")
    func commandsReachTheJournal() throws {
        let h = try SandboxHarness("journal")
        defer { h.destroy() }
        let jdir = h.dir + "/journal"
        let runner = SystemProcessRunner()
        func logged(_ args: String...) throws -> ProcessResult {
            try runner.run([Self.harness, jdir, "--", Support.desactl, "--config", h.configPath] + args)
        }
        let created = try logged("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi")
        try #require(created.ok, "\(created.stdout) \(created.stderr)")
        #expect(try logged("tenant", "suspend", "cileunyi-kulon").ok)
        let bad = try logged("tenant", "create", "32.04.05.2002", "--name", "x; rm -rf /", "--district", "Cileunyi")
        #expect(bad.status == 2)

        let tenant = try entries(jdir, "DESA_TENANT=32.04.05.2001")
        let create = try #require(tenant.first { $0["DESA_OP"] as? String == "create" })
        #expect(create["PRIORITY"] as? String == "6")
        #expect(create["MESSAGE"] as? String == "tenant cileunyi-kulon (32.04.05.2001) is active")
        #expect(create["DESA_SLUG"] as? String == "cileunyi-kulon")
        #expect(create["SYSLOG_IDENTIFIER"] as? String == "desa")
        let suspend = try #require(tenant.first { $0["DESA_OP"] as? String == "suspend" })
        #expect(suspend["DESA_STATUS"] as? String == "suspended")

        // One summary entry per command, naming who ran it.
        let summaries = try entries(jdir, "DESA_TARGET=32.04.05.2001")
        #expect(summaries.contains { $0["DESA_OP"] as? String == "create" && $0["DESA_OUTCOME"] as? String == "ok" && $0["DESA_ACTOR"] as? String == "root" })
        #expect(summaries.contains { $0["DESA_OP"] as? String == "suspend" && $0["PRIORITY"] as? String == "5" })

        // Refused input is recorded too, as a warning, without running anything.
        let refused = try entries(jdir, "DESA_TARGET=32.04.05.2002")
        #expect(refused.count == 1)
        #expect(refused.first?["DESA_OUTCOME"] as? String == "rejected")
        #expect(refused.first?["PRIORITY"] as? String == "4")

        // The audit table agrees.
        let store = try StateStore(path: try h.config().databasePath)
        let audit = try store.audit()
        #expect(audit.map(\.op) == ["create", "suspend", "create"])
        #expect(audit.map(\.outcome) == ["rejected", "ok", "ok"])
        #expect(audit.allSatisfy { $0.actor == "root" })
    }
}
