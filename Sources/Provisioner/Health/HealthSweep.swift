import Foundation
import GRDB
import NIOCore
import NIOPosix

/// One sweep of every tenant's health: the checks the capabilities bring (`HealthChecking`:
/// HTTP and HTTPS through the local nginx, the PHP-FPM pool, the certificate's days left,
/// the database sign-in, and any capability's own), drift; and the server's own (masters,
/// disk, state database).
///
/// Tenants are checked `health.concurrency` at a time, each tenant's checks at once, each
/// with `health.timeout`; probes are NIO channels and what blocks runs on the sweep's own
/// thread pool, so nothing blocks Swift's cooperative threads and one hanging tenant
/// delays nobody else. The drift look (it takes the state lock and plans) runs meanwhile
/// on a thread of its own.
public final class HealthSweep: Sendable {
    public let engine: Engine
    public let settings: HealthSettings
    let probes: HealthProbes
    let drift: DriftWatch
    let blocking: NIOThreadPool

    /// `lockTimeout`: how long the drift look waits for the state lock (an apply may hold
    /// it); past it, drift is skipped this sweep and its last state stands.
    public init(engine: Engine, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, lockTimeout: TimeInterval? = 60) {
        self.engine = engine
        settings = engine.config.health
        probes = HealthProbes(group: group, timeout: .milliseconds(Int64(engine.config.health.timeout * 1000)))
        drift = DriftWatch(engine: engine, lockTimeout: lockTimeout)
        // Database sign-ins block: a pool of their own, so a slow server queues them
        // there and nowhere else.
        blocking = NIOThreadPool(numberOfThreads: min(16, engine.config.health.concurrency))
        blocking.start()
    }

    deinit { blocking.shutdownGracefully { _ in } }

    /// What the sweep reads of the state database for every check.
    struct Snapshot: Sendable {
        /// Every tenant not deleted (or being deleted).
        var tenants: [Tenant]
        var aliases: [String: [String]]
        var now: Date
    }

    /// Sweeps once. Never throws: what cannot be checked is a finding.
    public func run() async -> SweepResult {
        let clock = ContinuousClock()
        let start = clock.now
        let startedAt = engine.now()
        var server: [CheckOutcome] = []
        // The masters first (a dead one started again in a sandbox), then everything else.
        let masters: [ServiceControl.Finding]?
        do {
            masters = try await BlockingThread.run("masters") { [drift] in try drift.services() }
        } catch let e as CancellationError {
            _ = e
            return SweepResult(tenants: [], server: [], startedAt: startedAt, duration: clock.now - start)
        } catch {
            engine.logger.warning("health: the masters not checked this sweep: \(Self.message(error))")
            masters = nil
        }
        // The drift look waits for the state lock: a thread of its own, not the pool's.
        async let driftLook: Result<DriftWatch.Round, Error> = {
            do { return .success(try await BlockingThread.run("drift look") { [drift] in try drift.look() }) } catch { return .failure(error) }
        }()

        let snapshot: Snapshot
        let readStart = clock.now
        switch await Self.off(blocking, { [engine] in try Self.snapshot(engine) }) {
        case .success(let s):
            snapshot = s
            server.append(CheckOutcome(.stateDB, .ok, duration: clock.now - readStart))
        case .failure(let e):
            server.append(CheckOutcome(.stateDB, .down, "cannot read the state database: " + Self.message(e), duration: clock.now - readStart))
            var r = SweepResult(tenants: [], server: server, startedAt: startedAt, duration: clock.now - start)
            r.skipped = engine.checkOrder.filter { $0 != .stateDB }
            _ = await driftLook
            return r
        }
        server += await Self.off(blocking) { [engine, settings] in Self.disk(engine.config, settings) }.get(or: [])

        let context = SweepContext(engine: engine, settings: settings, tenants: snapshot.tenants, aliases: snapshot.aliases,
                                   now: snapshot.now, probes: probes, blocking: blocking)
        var checks: [PreparedCheck] = []
        var unprepared: [HealthCheck] = []
        for c in engine.tenantChecks {
            switch await c.prepared(context) {
            case .success(let p): checks.append(p)
            case .failure(let e):
                engine.logger.warning("health: \(c.id) not checked this sweep: \(Self.message(e))")
                unprepared.append(c.id)
            }
        }
        var tenants = await checkTenants(snapshot.tenants, checks)
        await probes.closeIdle()
        var result = SweepResult(tenants: [], server: server, startedAt: startedAt, duration: .zero)
        result.skipped = unprepared
        switch await driftLook {
        case .success(let round):
            for i in tenants.indices {
                if let lines = round.drifted[tenants[i].code] {
                    tenants[i].outcomes.append(CheckOutcome(.drift, .degraded, "desactl apply would: " + Self.list(lines)))
                } else {
                    tenants[i].outcomes.append(CheckOutcome(.drift, .ok))
                }
            }
            result.server.append(round.server.isEmpty ? CheckOutcome(.drift, .ok)
                                 : CheckOutcome(.drift, .degraded, "desactl apply would: " + Self.list(round.server)))
        case .failure(let e):
            // Drift could not be looked at (the lock is held by a long apply): its last
            // state stands.
            result.skipped.append(.drift)
            engine.logger.warning("health: drift not checked this sweep: \(Self.message(e))")
        }
        if let masters {
            result.server += Self.services(masters, engine.serviceSpecs)
        } else {
            result.skipped += [.nginx, .phpFPM]
        }
        result.tenants = tenants
        result.duration = clock.now - start
        return result
    }

    // MARK: tenants

    /// Every tenant, `health.concurrency` at a time; each tenant's checks at once.
    func checkTenants(_ live: [Tenant], _ checks: [PreparedCheck]) async -> [TenantHealth] {
        let width = settings.concurrency
        return await withTaskGroup(of: (Int, TenantHealth).self) { group in
            var next = 0
            func add() {
                guard next < live.count else { return }
                let i = next, t = live[i]
                next += 1
                group.addTask { (i, await Self.check(t, checks)) }
            }
            for _ in 0..<min(width, live.count) { add() }
            var out = [TenantHealth?](repeating: nil, count: live.count)
            for await (i, h) in group {
                out[i] = h
                add()
            }
            return out.compactMap { $0 }
        }
    }

    static func check(_ t: Tenant, _ checks: [PreparedCheck]) async -> TenantHealth {
        let found = await withTaskGroup(of: (Int, CheckOutcome?).self) { group in
            for (i, c) in checks.enumerated() { group.addTask { (i, await c.run(t)) } }
            var out = [CheckOutcome?](repeating: nil, count: checks.count)
            for await (i, o) in group { out[i] = o }
            return out
        }
        return TenantHealth(code: t.code, slug: t.slug, outcomes: found.compactMap { $0 })
    }

    /// A probe's answer against the status expected.
    public static func judge(_ check: HealthCheck, _ r: ProbeResult, expected: Int, suspended: Bool) -> CheckOutcome {
        switch r.outcome {
        case .answered(let status) where status == expected:
            return CheckOutcome(check, .ok, duration: r.elapsed)
        case .answered(let status):
            let what = suspended ? "suspended, expected \(expected)" : "expected \(expected)"
            return CheckOutcome(check, .down, "HTTP \(status) (\(what))", duration: r.elapsed)
        case .failed(let reason):
            return CheckOutcome(check, .down, reason, duration: r.elapsed)
        }
    }

    // MARK: the server

    static func services(_ findings: [ServiceControl.Finding], _ specs: [ServiceSpec]) -> [CheckOutcome] {
        var out: [CheckOutcome] = []
        for (check, isIt) in [(HealthCheck.nginx, { (s: ServiceSpec) in s.kind == .nginx }),
                              (HealthCheck.phpFPM, { (s: ServiceSpec) in s.kind == .phpFPM })] {
            let names = Set(specs.filter(isIt).map(\.name))
            let found = findings.filter { names.contains($0.service) }
            if found.isEmpty {
                out.append(CheckOutcome(check, .ok))
            } else {
                let state: HealthState = found.allSatisfy(\.repaired) ? .degraded : .down
                out.append(CheckOutcome(check, state, found.map(\.message).joined(separator: "; ")))
            }
        }
        return out
    }

    /// Free space of the web root's and the state directory's file systems.
    static func disk(_ c: Config, _ s: HealthSettings) -> [CheckOutcome] {
        var worst = CheckOutcome(.disk, .ok)
        var reasons: [String] = []
        for (what, path) in [("web root", c.webRoot), ("state directory", c.stateDir)] {
            var st = statvfs()
            guard statvfs(path, &st) == 0 else {
                reasons.append("\(what) \(path): \(errnoText())")
                worst.state = .down
                continue
            }
            let total = Double(st.f_blocks) * Double(st.f_frsize)
            let free = Double(st.f_bavail) * Double(st.f_frsize)
            guard total > 0 else { continue }
            let percent = free / total * 100
            let state: HealthState = percent < s.diskDownPercent ? .down : percent < s.diskWarningPercent ? .degraded : .ok
            if state != .ok {
                reasons.append(String(format: "\(what) \(path): %.1f%% free (%.1f GiB)", percent, free / 1_073_741_824))
                worst.state = max(worst.state, state)
            }
        }
        worst.reason = reasons.joined(separator: "; ")
        return [worst]
    }

    static func snapshot(_ engine: Engine) throws -> Snapshot {
        let now = engine.now()
        let (tenants, aliases) = try engine.store.queue.read { db in
            (try Tenant.filter(Column("desired") != Tenant.Desired.deleted.rawValue).order(Column("code")).fetchAll(db),
             try Engine.aliases(db))
        }
        return Snapshot(tenants: tenants, aliases: aliases, now: now)
    }

    // MARK: helpers

    static func off<T: Sendable>(_ pool: NIOThreadPool, _ work: @escaping @Sendable () throws -> T) async -> Result<T, Error> {
        do { return .success(try await pool.runIfActive(work)) } catch { return .failure(error) }
    }

    public static func message(_ e: Error?) -> String {
        guard let e else { return "unknown error" }
        return (e as? DesaError)?.message ?? "\(e)"
    }

    static func list(_ lines: [String]) -> String {
        lines.prefix(3).joined(separator: "; ") + (lines.count > 3 ? "; and \(lines.count - 3) more" : "")
    }
}

extension Result {
    func get(or fallback: Success) -> Success { (try? get()) ?? fallback }
    var failure: Failure? { if case .failure(let e) = self { e } else { nil } }
}
