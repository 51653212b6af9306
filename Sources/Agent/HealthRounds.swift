import Foundation
import Logging
import Provisioner
import Synchronization

/// The health service's work: a sweep (`HealthSweep`), recorded in the state database with
/// each change said once in the journal (`Engine.recordHealth`); READY=1 after the first
/// sweep and STATUS= after each. A sweep that cannot be recorded (the state database
/// cannot be written) is said in the journal once per distinct failure, and survived.
final class HealthRounds: Sendable {
    let sweep: HealthSweep
    /// Called with each sweep and the changes it made (metrics).
    let observe: @Sendable (SweepResult) -> Void
    private let unrecorded = Mutex<String?>(nil)

    init(sweep: HealthSweep, observe: @escaping @Sendable (SweepResult) -> Void = { _ in }) {
        self.sweep = sweep
        self.observe = observe
    }

    var engine: Engine { sweep.engine }

    /// One sweep, recorded. Throws only `CancellationError`.
    func round() async throws -> SweepResult {
        let result = await sweep.run()
        try Task.checkCancellation()
        observe(result)
        do {
            try await BlockingThread.run("health record") { [engine] in _ = try engine.recordHealth(result) }
            if let was = unrecorded.withLock({ v -> String? in defer { v = nil }; return v }) {
                engine.journal.send(["MESSAGE": "server: the health of tenants is recorded again (was: \(was))",
                                     "MESSAGE_ID": HealthMessageID.serverRecovered, "DESA_OP": "health", "DESA_CHECK": HealthCheck.stateDB.rawValue,
                                     "DESA_STATE": "ok", "DESA_PREVIOUS_STATE": "down", "DESA_REASON": "",
                                     "PRIORITY": "\(JournalPriority.notice.rawValue)"])
            }
        } catch let e as CancellationError {
            throw e
        } catch {
            let why = "cannot record health in the state database: " + ((error as? DesaError)?.message ?? "\(error)")
            let new = unrecorded.withLock { v -> Bool in defer { v = why }; return v != why }
            if new {
                engine.logger.error("\(why)")
                engine.journal.send(["MESSAGE": "server: state-db is down: \(why)", "MESSAGE_ID": HealthMessageID.serverProblem,
                                     "DESA_OP": "health", "DESA_CHECK": HealthCheck.stateDB.rawValue, "DESA_STATE": "down",
                                     "DESA_PREVIOUS_STATE": "ok", "DESA_REASON": why, "PRIORITY": "\(JournalPriority.err.rawValue)"])
            }
        }
        return result
    }

    /// A sweep as the service's tick: READY=1 once the first sweep has looked, and
    /// STATUS=<summary> after each.
    func tick(_ count: Int) async throws {
        let r = try await round()
        ServiceNotify.send((count == 0 ? "READY=1\n" : "") + "STATUS=" + r.summary)
        // What the sweep freed goes back to the kernel before the agent waits for the next.
        ProcessMemory.trim()
    }
}

/// The renewal service's work: what `desactl cert renew --due` does (issue what is due,
/// renew what the ARI window or two thirds of the lifetime says, serve the result),
/// on a thread of its own. Each order is journaled by the certificate service; a failure
/// of the whole run is journaled here and the next run tries again.
struct Renewals: Sendable {
    let engine: Engine

    func tick(_: Int) async throws {
        do {
            let r = try await BlockingThread.run("certificate renewal") { [engine] in
                try engine.issueCertificates(dns01: try engine.dnsResponder())
            }
            if !r.issued.isEmpty || !r.failed.isEmpty { engine.logger.notice("renewal: \(r.summary)") }
        } catch let e as CancellationError {
            throw e
        } catch {
            let why = (error as? DesaError)?.message ?? "\(error)"
            engine.logger.error("renewal failed: \(why)")
            engine.journal.send(["MESSAGE": "certificate renewal failed: \(why)", "DESA_OP": "cert-renew",
                                 "PRIORITY": "\(JournalPriority.err.rawValue)"])
        }
    }
}

/// The reconcile service's work, when `health.repair_drift` is on: when the server
/// differs from the state database, `desactl apply` (each repaired tenant is journaled
/// by the apply itself).
struct Reconcile: Sendable {
    let engine: Engine

    func tick(_: Int) async throws {
        do {
            let outcome = try await BlockingThread.run("reconcile") { [engine] () -> (actions: Int, report: ChangeReport)? in
                let plan = try engine.plan()
                guard !plan.steps.isEmpty else { return nil }
                return (plan.steps.count, try engine.apply())
            }
            if let outcome {
                let ok = outcome.report.exitStatus == ExitStatus.ok
                let msg = ok ? "reconcile: repaired drift, \(outcome.actions) action\(outcome.actions == 1 ? "" : "s")"
                    : "reconcile failed: \(outcome.report.summary)"
                if ok { engine.logger.notice("\(msg)") } else { engine.logger.error("\(msg)") }
                engine.journal.send(["MESSAGE": msg, "DESA_OP": "reconcile", "DESA_ACTIONS": "\(outcome.actions)",
                                     "PRIORITY": "\((ok ? JournalPriority.notice : .err).rawValue)"])
            }
        } catch let e as CancellationError {
            throw e
        } catch {
            let why = (error as? DesaError)?.message ?? "\(error)"
            engine.logger.error("reconcile failed: \(why)")
            engine.journal.send(["MESSAGE": "reconcile failed: \(why)", "DESA_OP": "reconcile",
                                 "PRIORITY": "\(JournalPriority.err.rawValue)"])
        }
    }
}
