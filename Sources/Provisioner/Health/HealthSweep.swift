import Foundation
import GRDB
import NIOCore
import NIOPosix

/// One sweep of every tenant's health: HTTP and HTTPS through the local nginx, the PHP-FPM
/// pool's ping, the certificate's days left, the database sign-in, drift; and the server's
/// own (masters, disk, state database).
///
/// Tenants are checked `health.concurrency` at a time, each tenant's checks at once, each
/// with `health.timeout`; probes are NIO channels and a database sign-in runs on NIO's
/// blocking pool, so nothing blocks Swift's cooperative threads and one hanging tenant
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

    /// What a tenant's checks need from the state database, read once per sweep.
    struct Snapshot: Sendable {
        /// Every tenant not deleted (or being deleted).
        var tenants: [Tenant]
        var aliases: [String: [String]]
        var databases: Set<String>
        var certificates: [CertRecord]
        /// Certificate files that exist (each record's chain and key).
        var present: Set<String>
        var now: Date
        /// Pool sockets php-fpm listens on, and the pools that have a worker now.
        var listening: Set<String> = []
        var pools: Set<String> = []
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
            r.skipped = HealthCheck.allCases.filter { $0 != .stateDB }
            _ = await driftLook
            return r
        }
        server += await Self.off(blocking) { [engine, settings] in Self.disk(engine.config, settings) }.get(or: [])

        // What nginx answers for a name no vhost has (its default server): a village whose
        // own vhost is gone gets exactly that, which may well be a 200.
        let catchAll = await defaultServer()
        var tenants = await checkTenants(snapshot, catchAll: catchAll)
        await probes.closeIdle()
        var result = SweepResult(tenants: [], server: server, startedAt: startedAt, duration: .zero)
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
            result.skipped = [.drift]
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

    /// The status and body nginx's default server gives a name no vhost has; nil when it
    /// answers nothing or an empty body (nothing a village's page could be mistaken for).
    func defaultServer() async -> (status: Int, body: String)? {
        guard let address = ProbeAddress(engine.config.nginx.probe) else { return nil }
        let r = await probes.http(address, host: "desa-health-check.invalid")
        guard case .answered(let status) = r.outcome, !r.body.isEmpty else { return nil }
        return (status, r.body)
    }

    func checkTenants(_ s: Snapshot, catchAll: (status: Int, body: String)?) async -> [TenantHealth] {
        let live = s.tenants
        let tls = engine.config.tls
        let serving = CertStore.serving(s.certificates, tenants: live, aliases: s.aliases, config: engine.config, now: s.now,
                                        fileExists: { s.present.contains($0) })
        let width = settings.concurrency
        return await withTaskGroup(of: (Int, TenantHealth).self) { group in
            var next = 0
            func add() {
                guard next < live.count else { return }
                let i = next, t = live[i]
                next += 1
                group.addTask { [self] in (i, await check(t, s, tls: serving[t.code] ?? [], certificatesOn: tls.enabled, catchAll: catchAll)) }
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

    func check(_ t: Tenant, _ s: Snapshot, tls: [TLSServe], certificatesOn: Bool, catchAll: (status: Int, body: String)?) async -> TenantHealth {
        let c = engine.config
        let primary = t.primaryDomain(c)
        let suspended = t.desired == .suspended
        let secure = tls.contains { $0.names.contains(primary) }
        async let http = httpCheck(host: primary, suspended: suspended, redirects: secure, catchAll: catchAll)
        async let https = secure ? httpsCheck(host: primary, suspended: suspended) : nil
        async let php = suspended ? nil : phpCheck(t, s)
        async let database = s.databases.contains(t.code) ? databaseCheck(t) : nil
        let certificate = Self.certificateCheck(t, s, config: c, warningDays: settings.certificateWarningDays, enabled: certificatesOn)
        var outcomes = [await http]
        for o in [await https, await php, certificate.outcome, await database] { if let o { outcomes.append(o) } }
        var h = TenantHealth(code: t.code, slug: t.slug, outcomes: outcomes)
        h.certificateDaysLeft = certificate.daysLeft
        return h
    }

    func httpCheck(host: String, suspended: Bool, redirects: Bool, catchAll: (status: Int, body: String)?) async -> CheckOutcome {
        guard let address = ProbeAddress(engine.config.nginx.probe) else {
            return CheckOutcome(.http, .down, "nginx.probe \(engine.config.nginx.probe) is not an address")
        }
        let r = await probes.http(address, host: host)
        if let catchAll, case .answered(catchAll.status) = r.outcome, r.body == catchAll.body {
            return CheckOutcome(.http, .down, "HTTP \(catchAll.status) from nginx's default server, not the village's vhost (is its vhost missing?)",
                                duration: r.elapsed)
        }
        let expected = suspended ? 503 : (redirects ? 301 : 200)
        return Self.judge(.http, r, expected: expected, suspended: suspended)
    }

    func httpsCheck(host: String, suspended: Bool) async -> CheckOutcome {
        let listen = engine.config.tls.listen
        let address = ProbeAddress(listen.contains(":") ? listen : "127.0.0.1:\(listen)") ?? ProbeAddress("127.0.0.1:443")!
        let r = await probes.https(address, host: host, trustRoots: engine.config.tls.trustedRoots)
        return Self.judge(.https, r, expected: suspended ? 503 : 200, suspended: suspended)
    }

    /// The pool's socket listens (php-fpm's master has the pool); when the pool has workers
    /// already, one answers FPM's ping. An idle pool is not pinged: under `pm = ondemand` a
    /// ping starts a worker (20 MB or more, for 20 s), and 5,000 pings at once exhausted a
    /// 24 GB machine.
    func phpCheck(_ t: Tenant, _ s: Snapshot) async -> CheckOutcome {
        guard let socket = try? t.phpSocket(engine.config) else {
            return CheckOutcome(.php, .down, "PHP \(t.php) is not configured in php.versions")
        }
        guard s.listening.contains(socket) else {
            let why = FileManager.default.fileExists(atPath: socket) ? "nothing listens on \(socket)" : "socket missing: \(socket)"
            return CheckOutcome(.php, .down, "the pool does not answer: " + why)
        }
        guard s.pools.contains(t.userName(prefix: engine.config.userPrefix)) else { return CheckOutcome(.php, .ok) }
        let r = await probes.fpmPing(socket: socket, path: PoolsCapability.pingPath)
        switch r.outcome {
        case .answered(200) where r.body.hasPrefix("pong"):
            return CheckOutcome(.php, .ok, duration: r.elapsed)
        case .answered(let status):
            return CheckOutcome(.php, .down, "the pool answered its ping with status \(status)", duration: r.elapsed)
        case .failed(let reason):
            return CheckOutcome(.php, .down, "the pool does not answer: " + reason, duration: r.elapsed)
        }
    }

    func databaseCheck(_ t: Tenant) async -> CheckOutcome {
        let home = t.home(engine.config)
        let timeout = UInt32(max(1, settings.timeout.rounded(.up)))
        let clock = ContinuousClock()
        let start = clock.now
        let r = await Self.off(blocking) { () -> CheckOutcome in
            guard let creds = DatabaseCredentials.read(home: home) else {
                return CheckOutcome(.database, .down, "no readable credentials file \(home)/\(DatabasesCapability.credentialsFile)")
            }
            let conn = try MariaDBConnection(address: creds.address, user: creds.user, password: creds.password,
                                             database: creds.database, timeout: timeout, readTimeout: timeout)
            guard try conn.scalar(SQL("SELECT 1")) == "1" else {
                return CheckOutcome(.database, .down, "SELECT 1 did not answer 1")
            }
            return CheckOutcome(.database, .ok)
        }
        var o = (try? r.get()) ?? CheckOutcome(.database, .down, Self.message(r.failure))
        o.duration = clock.now - start
        return o
    }

    /// Days left on the certificates serving the tenant's names; expired or missing
    /// for its primary name is down, fewer than `warningDays` left or an alias not
    /// covered is degraded.
    static func certificateCheck(_ t: Tenant, _ s: Snapshot, config: Config, warningDays: Int,
                                 enabled: Bool) -> (outcome: CheckOutcome?, daysLeft: Double?) {
        let primary = t.primaryDomain(config)
        let names = [primary] + (s.aliases[t.code] ?? [])
        let mine = s.certificates.filter { r in
            r.hasCertificate && (r.members.isEmpty || r.members.contains(t.code)) && names.contains { r.covers($0) }
        }
        guard enabled || !mine.isEmpty else { return (nil, nil) }
        let valid = mine.filter { $0.isValid(at: s.now) && s.present.contains($0.chainPath(config)) }
        guard !valid.isEmpty || !mine.isEmpty else {
            return (CheckOutcome(.certificate, .degraded, "no certificate yet for \(primary) (desactl cert issue \(t.slug))"), nil)
        }
        let serving = valid.filter { $0.covers(primary) }
        guard let best = serving.max(by: { $0.notAfter! < $1.notAfter! }) else {
            if let expired = mine.filter({ $0.covers(primary) }).max(by: { $0.notAfter! < $1.notAfter! }), expired.notAfter! <= s.now {
                return (CheckOutcome(.certificate, .down, "certificate \(expired.id) for \(primary) expired at \(Timestamp.format(expired.notAfter!))"), 0)
            }
            return (CheckOutcome(.certificate, .down, "no valid certificate covers \(primary)"), nil)
        }
        let days = best.notAfter!.timeIntervalSince(s.now) / 86_400
        let uncovered = names.filter { n in !valid.contains { $0.covers(n) } }
        if days < Double(warningDays) {
            return (CheckOutcome(.certificate, .degraded, String(format: "certificate \(best.id) has %.1f days left (expires \(Timestamp.format(best.notAfter!)))", days)), days)
        }
        if !uncovered.isEmpty {
            return (CheckOutcome(.certificate, .degraded, "not covered: " + uncovered.joined(separator: ", ")), days)
        }
        return (CheckOutcome(.certificate, .ok), days)
    }

    /// A probe's answer against the status expected.
    static func judge(_ check: HealthCheck, _ r: ProbeResult, expected: Int, suspended: Bool) -> CheckOutcome {
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
        let (tenants, aliases, databases, certs) = try engine.store.queue.read { db in
            (try Tenant.filter(Column("desired") != Tenant.Desired.deleted.rawValue).order(Column("code")).fetchAll(db),
             try Engine.aliases(db),
             Set(try TenantDatabase.byCode(db).values.filter { $0.desired == .present }.map(\.code)),
             try CertStore.records(db))
        }
        let present = Set(certs.filter(\.hasCertificate).flatMap { [$0.chainPath(engine.config), $0.keyPath(engine.config)] }.filter {
            FileManager.default.fileExists(atPath: $0)
        })
        return Snapshot(tenants: tenants, aliases: aliases, databases: databases, certificates: certs, present: present, now: now,
                        listening: Processes.listeningUnixSockets(), pools: Processes.fpmPoolsWithWorkers())
    }

    // MARK: helpers

    static func off<T: Sendable>(_ pool: NIOThreadPool, _ work: @escaping @Sendable () throws -> T) async -> Result<T, Error> {
        do { return .success(try await pool.runIfActive(work)) } catch { return .failure(error) }
    }

    static func message(_ e: Error?) -> String {
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
