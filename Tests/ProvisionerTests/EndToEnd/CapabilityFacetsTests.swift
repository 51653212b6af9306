import Foundation
import Logging
import Testing
@testable import Provisioner

/// A clock a test moves by hand: what the agent's jobs and records read.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var now: Date
    init(_ start: Date) { now = start }
    func set(_ d: Date) { lock.withLock { now = d } }
    var time: TimeSource {
        TimeSource(now: { [self] in lock.withLock { now } }, sleep: { s in TimeSource.system.sleep(s) })
    }
}

/// Every facet of a capability, through the test-only `Banners` registered by one line:
/// its table and state, its health check in the record, the journal and `desactl health`,
/// its metric on `/metrics`, and its nightly job run by the agent at its time.
@Suite("Capability facets: a test capability's state, check, metric and job", .serialized)
struct CapabilityFacetsTests {
    static func waitFor(_ what: String, seconds: Double = 30, _ done: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try done() { return }
            usleep(50_000)
        }
        Issue.record("timed out waiting for \(what)")
    }

    @Test("Banners' check in desactl health --json and the journal, its series on /metrics, its nightly job at 03:00 (clock moved)")
    func facets() async throws {
        let h = try SandboxHarness("facets")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(2)).ok)
        let socket = h.dir + "/run/metrics.sock"
        try h.set("metrics", ["listen": "\"unix:\(socket)\""])

        let journal = RecordingJournal()
        let clock = ManualClock(Timestamp.parse("2030-01-10T01:00:00Z")!)
        let engine = try Engine(config: try h.config(), journal: journal, actor: "desa-agent",
                                capabilities: Capabilities.builtIn + [Banners()])   // the registration line
        engine.time = clock.time
        // Its table exists, and its state reaches its plan.
        try Banners.setNote(engine, code: "32.04.05.2001", "from its table")
        let applied = try engine.apply()
        #expect(applied.result?.failures.isEmpty == true, "\(applied.result?.failures ?? [])")
        #expect(try h.get("banner-cileunyi-kulon.test").body == "banner cileunyi-kulon: from its table\n")
        #expect(try h.get("banner-cileunyi-wetan.test").body == "banner cileunyi-wetan\n")

        var host = AgentHost(engine: engine, interval: 1)
        host.jobPoll = .milliseconds(50)
        let agent = Task { [host] in try await host.run(logger: Logger(label: "test"), signals: []) }
        defer { agent.cancel() }

        // Its check is recorded like the built-in ones, and desactl (which does not have
        // the capability) shows it.
        try Self.waitFor("a sweep with the banner check") {
            try engine.healthReport().tenants.filter { $0.checks.contains { $0.check == BannerCheck.id && $0.state == .ok } }.count == 2
        }
        let shown = try h.desactl("health", "--json")
        let json = try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any]
        let tenants = try #require(json?["tenants"] as? [[String: Any]], "\(shown.stdout)")
        for t in tenants {
            let checks = (t["checks"] as? [[String: Any]] ?? []).map { ($0["check"] as? String ?? "", $0["state"] as? String ?? "") }
            #expect(checks.contains { $0 == ("banner", "ok") }, "\(t)")
        }

        // Its series, from its check's value.
        let metrics = try await MetricsTests.curl(["--unix-socket", socket, "http://localhost/metrics"])
        #expect(metrics.body.contains("desa_banner_bytes{tenant=\"cileunyi-kulon\"} 38.0"), "\(metrics.body)")
        #expect(metrics.body.contains("desa_banner_bytes{tenant=\"cileunyi-wetan\"} 22.0"), "\(metrics.body)")
        #expect(metrics.body.contains("# HELP desa_banner_bytes Length of the line each tenant's banner answers."))

        // A banner gone is down, said once in the journal with the check's name.
        let c = try h.config()
        try FileManager.default.removeItem(atPath: c.nginx.sitesDir + "/cileunyi-wetan.banner.conf")
        try AgentTests.reloadNginx(c)
        try Self.waitFor("the banner's check down") {
            journal.entries.contains { $0["DESA_CHECK"] == "banner" && $0["DESA_STATE"] == "down" }
        }
        let down = journal.entries.filter { $0["DESA_CHECK"] == "banner" && $0["DESA_STATE"] == "down" }
        #expect(down.count == 1 && down.first?["DESA_SLUG"] == "cileunyi-wetan", "\(down)")
        #expect(down.first?["MESSAGE_ID"] == HealthMessageID.down)
        let after = try h.desactl("health", "--json")
        #expect(after.status == 1, "a tenant is down")
        #expect(after.stdout.contains("\"check\": \"banner\",\n") && after.stdout.contains("\"state\": \"down\""), "\(after.stdout)")

        // The nightly job has not run (01:00); at 03:00 it does, and its apply puts the
        // banner back with the nightly note.
        #expect(try engine.jobRecords()["banner-nightly"] == nil)
        clock.set(Timestamp.parse("2030-01-10T03:00:01Z")!)
        try Self.waitFor("the nightly job") { try engine.jobRecords()["banner-nightly"]?.outcome == "ok" }
        let run = try #require(try engine.jobRecords()["banner-nightly"])
        #expect(run.detail.hasPrefix("2 notes written"), "\(run.detail)")
        #expect(try h.get("banner-cileunyi-wetan.test").body == "banner cileunyi-wetan: nightly 2030-01-10T03:00:00Z\n")
        let jobEntry = journal.entries.first { $0["DESA_JOB"] == "banner-nightly" }
        #expect(jobEntry?["DESA_OUTCOME"] == "ok", "\(journal.entries.filter { $0["DESA_JOB"] != nil })")
        try Self.waitFor("the banner's check ok again") {
            journal.entries.contains { $0["DESA_CHECK"] == "banner" && $0["DESA_STATE"] == "ok" && $0["DESA_SLUG"] == "cileunyi-wetan" }
        }
        let runs = try await MetricsTests.curl(["--unix-socket", socket, "http://localhost/metrics"])
        #expect(runs.body.contains("desa_job_runs_total{job=\"banner-nightly\",outcome=\"ok\"} 1"), "\(runs.body)")
        // desactl job list shows it, with its next run.
        let listed = try h.desactl("job", "list")
        #expect(listed.ok, "\(listed.message)")
        agent.cancel()
        _ = try? await agent.value
    }

    @Test("every MESSAGE_ID a built-in check declares is explained in systemd/desa.catalog")
    func catalogHasEveryCheck() throws {
        let catalog = Support.read(Support.packageRoot.path + "/systemd/desa.catalog")
        let ids = Capabilities.builtIn.flatMap { ($0 as? any HealthChecking)?.healthChecks ?? [] }.flatMap { $0.messageIDs.values }
        #expect(!ids.isEmpty)
        for id in ids { #expect(catalog.contains("\n-- \(id)\n"), "\(id) is not in systemd/desa.catalog") }
    }

    @Test("a nightly schedule: the next run after a run, a run missed while the agent was down, a random delay")
    func schedules() throws {
        let utc = TimeZone(identifier: "UTC")!
        let s = JobSchedule.daily(hour: 3, minute: 0, randomDelay: 600, timeZone: utc)
        let t = { Timestamp.parse($0)! }
        #expect(s.previous(atOrBefore: t("2030-01-10T02:59:59Z")) == t("2030-01-09T03:00:00Z"))
        #expect(s.previous(atOrBefore: t("2030-01-10T03:00:00Z")) == t("2030-01-10T03:00:00Z"))
        #expect(s.next(after: t("2030-01-10T03:04:00Z"), random: { _ in 0 }) == t("2030-01-11T03:00:00Z"))
        #expect(s.next(after: t("2030-01-10T03:04:00Z"), random: { $0 }) == t("2030-01-11T03:10:00Z"))
        #expect(JobSchedule.every(seconds: 3600).next(after: t("2030-01-10T03:04:00Z")) == t("2030-01-10T04:04:00Z"))
        let zero = { (_: Int) in 0 }
        // Never ran: tonight; an interval job at once.
        #expect(s.due(lastStart: nil, lastEnd: nil, now: t("2030-01-10T15:00:00Z"), random: zero) == t("2030-01-11T03:00:00Z"))
        #expect(JobSchedule.every(seconds: 60).due(lastStart: nil, lastEnd: nil, now: t("2030-01-10T15:00:00Z")) == t("2030-01-10T15:00:00Z"))
        // Ran last night: tomorrow night. Last ran two nights ago (the agent was down at
        // 03:00): at once.
        #expect(s.due(lastStart: t("2030-01-10T03:00:05Z"), lastEnd: t("2030-01-10T03:02:00Z"), now: t("2030-01-10T15:00:00Z"),
                      random: zero) == t("2030-01-11T03:00:00Z"))
        #expect(s.due(lastStart: t("2030-01-09T03:00:05Z"), lastEnd: t("2030-01-09T03:02:00Z"), now: t("2030-01-10T15:00:00Z"),
                      random: zero) == t("2030-01-10T15:00:00Z"))
    }
}
