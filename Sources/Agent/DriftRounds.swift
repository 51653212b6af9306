import Logging
import Provisioner

/// The drift service's work: a `DriftWatch` round on a thread of its own (it takes the
/// state lock, runs processes and probes), whose failure is journaled and survived.
struct DriftRounds: Sendable {
    let watch: DriftWatch

    /// One round, or nil when it failed (a database that cannot be read, a lock held too
    /// long): that is reported with DESA_OP=check and the next round tries again.
    /// Throws only `CancellationError`: the round was abandoned, still running.
    func round() async throws -> DriftWatch.Round? {
        do {
            return try await BlockingThread.run("drift round") { [watch] in try watch.round() }
        } catch let e as CancellationError {
            throw e
        } catch {
            let msg = "check failed: " + ((error as? DesaError)?.message ?? "\(error)")
            watch.engine.logger.error("\(msg)")
            watch.engine.journal.send(["MESSAGE": msg, "DESA_OP": "check", "PRIORITY": "\(JournalPriority.err.rawValue)"])
            return nil
        }
    }

    /// A round as the service's tick: READY=1 once the first round has looked, and
    /// STATUS=<summary> after each.
    func tick(_ count: Int) async throws {
        let r = try await round()
        ServiceNotify.send((count == 0 ? "READY=1\n" : "") + "STATUS=" + (r?.summary ?? "check failed, see the journal"))
    }
}
