import Foundation

/// The health sweep's look at drift: the server compared with the state database (the
/// same plan `desactl plan` shows): a vhost removed by hand, a pool edited, a home whose
/// mode changed. Before it, `services()` finds a dead nginx or php-fpm master (and starts
/// it again in a sandbox: a killed php-fpm leaves every config in place while every PHP
/// page answers 502). It changes nothing else; `desactl apply`, or the agent's repair when
/// `health.repair_drift` says so, repairs.
///
/// Blocking (a lock, processes, the database): call `look()` from a thread of its own,
/// not from Swift's cooperative pool. Sendable because looks are serialized by an
/// internal lock.
public final class DriftWatch: @unchecked Sendable {
    public struct Round: Sendable {
        /// Tenants (village code) with pending actions, and what they are.
        public var drifted: [String: [String]]
        /// Actions that belong to no tenant (shared directories, unknown configs, an
        /// interrupted apply).
        public var server: [String]

        public init(drifted: [String: [String]] = [:], server: [String] = []) {
            self.drifted = drifted; self.server = server
        }
    }

    public let engine: Engine
    /// How long a look waits for the state lock before it fails (nil: for ever).
    public let lockTimeout: TimeInterval?
    private let serial = NSLock()

    public init(engine: Engine, lockTimeout: TimeInterval? = nil) {
        self.engine = engine
        self.lockTimeout = lockTimeout
    }

    /// The masters: a dead one is found (and started again in a sandbox) before anything
    /// is probed, so a village is not found down for a master that is already back. Under
    /// the state lock, as every command's own check.
    public func services() throws -> [ServiceControl.Finding] {
        serial.lock()
        defer { serial.unlock() }
        let held = try engine.lock(timeout: lockTimeout)
        defer { withExtendedLifetime(held) {} }
        return engine.services.ensureRunning(engine.serviceSpecs)
    }

    /// One look. Holds the state lock while it looks, so it never reports the
    /// half-written state of an apply in progress; the lock is released when it returns
    /// or throws. Throws a `.conflict` DesaError when the lock stays taken past `lockTimeout`.
    public func look() throws -> Round {
        serial.lock()
        defer { serial.unlock() }
        let held = try engine.lock(timeout: lockTimeout)
        defer { withExtendedLifetime(held) {} }
        #if DEBUG
        // Tests only: a look that hangs while it holds the lock, as a hung probe would.
        if let s = ProcessInfo.processInfo.environment["DESA_TEST_SLOW_ROUND_SECONDS"], let seconds = Double(s) {
            Thread.sleep(forTimeInterval: seconds)
        }
        #endif
        let plan = try engine.plan()
        var r = Round()
        for a in plan.steps {
            let line = "\(a.op) \(a.subject)"
            if let t = a.tenant { r.drifted[t, default: []].append(line) } else { r.server.append(line) }
        }
        r.server += plan.unknown.map { "unknown to the state database: \($0)" }
        if RollbackJournal(dir: engine.config.rollbackDir).pending() != nil {
            r.server.append("an interrupted apply left its rollback journal; the next desactl apply restores it")
        }
        return r
    }
}
