import Foundation
import Logging

import Synchronization

/// The health service's work: a sweep (`HealthSweep`), recorded in the state database with
/// each change said once in the journal (`Engine.recordHealth`); READY=1 after the first
/// sweep and STATUS= after each. A sweep that cannot be recorded (the state database
/// cannot be written) is said in the journal once per distinct failure, and survived.
public final class HealthRounds: Sendable {
    let sweep: HealthSweep
    /// Called with each sweep and the changes it made (metrics).
    let observe: @Sendable (SweepResult) -> Void
    private let unrecorded = Mutex<String?>(nil)

    public init(sweep: HealthSweep, observe: @escaping @Sendable (SweepResult) -> Void = { _ in }) {
        self.sweep = sweep
        self.observe = observe
    }

    var engine: Engine { sweep.engine }

    /// One sweep, recorded. Throws only `CancellationError`.
    public func round() async throws -> SweepResult {
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
