import Foundation
import ServiceLifecycle

/// Runs one job at its times for as long as the agent runs. Its clock is the engine's
/// (`TimeSource`), looked at every `poll`: a moved clock (a test's, or the system's after
/// NTP) is noticed within one poll, and a nightly job does not sleep through a day on a
/// timer that the clock's jump made wrong.
struct JobService: Service, CustomStringConvertible {
    let job: Job
    let engine: Engine
    let metrics: AgentMetrics?
    let poll: Duration

    var description: String { "job \(job.name)" }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { [self] in
                var due = engine.nextDue(job, last: (try? engine.jobRecords())?[job.name])
                while true {
                    while engine.now() < due {
                        let left = due.timeIntervalSince(engine.now())
                        try await Task.sleep(for: min(poll, .milliseconds(Int64(max(1, left * 1000)))))
                    }
                    let record = await engine.runJob(job, due: due)
                    try Task.checkCancellation()
                    metrics?.recordJob(job.name, ok: record.outcome != "failed")
                    due = job.schedule.next(after: record.lastEnd ?? engine.now())
                }
            }
        } catch is CancellationError {}
    }
}
