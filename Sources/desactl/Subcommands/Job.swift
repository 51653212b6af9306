import ArgumentParser
import Foundation
import Provisioner

struct JobCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job",
        abstract: "The agent's scheduled jobs (certificate renewals, repairs, ...): their last runs and next times, or one run now.",
        subcommands: [List.self, Run.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every job: its schedule, its last run and outcome, when it runs next.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            try CLI.run {
                let e = try global.engine(json: true)
                let records = try e.jobRecords()
                let jobs = e.jobs
                var rows: [[String]] = []
                var objects: [JSON] = []
                func add(_ name: String, schedule: String, next: Date?) {
                    let r = records[name]
                    rows.append([name, schedule, r.map { Timestamp.format($0.lastStart) } ?? "never", r?.outcome ?? "-",
                                 next.map { Timestamp.format($0) } ?? "-", r?.detail ?? ""])
                    objects.append(.object([("name", .string(name)), ("schedule", .string(schedule)),
                                            ("last_start", .str(r.map { Timestamp.format($0.lastStart) })),
                                            ("last_end", .str(r?.lastEnd.map { Timestamp.format($0) })),
                                            ("outcome", .str(r?.outcome)), ("detail", .str(r?.detail)),
                                            ("next", .str(next.map { Timestamp.format($0) }))]))
                }
                for j in jobs { add(j.name, schedule: j.schedule.description, next: e.nextDue(j, last: records[j.name], random: { _ in 0 })) }
                // Runs recorded by jobs this build does not have (a capability it lacks, or one turned off).
                for (name, _) in records.sorted(by: { $0.key < $1.key }) where !jobs.contains(where: { $0.name == name }) {
                    add(name, schedule: "not scheduled here", next: nil)
                }
                if json { CLI.printJSON(.array(objects)); return }
                print(rows.isEmpty ? "No jobs: nothing is scheduled with this config." :
                      Table.render(header: ["JOB", "SCHEDULE", "LAST START", "OUTCOME", "NEXT", "DETAIL"], rows: rows))
            }
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a job now, here, as the agent would (one run at a time: a run in progress is not doubled).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The job's name (desactl job list).") var name: String
        func run() throws {
            try CLI.run {
                let e = try global.engine()
                guard let job = e.jobs.first(where: { $0.name == name }) else {
                    throw DesaError(.notFound, "no job \(name) with this config (desactl job list)")
                }
                let r = try blockingAwait { await e.runJob(job, due: e.time.now()) }
                print("\(job.name): \(r.outcome)" + (r.detail.isEmpty ? "" : "; \(r.detail)"))
                if r.outcome == "failed" { throw ExitCode(ExitStatus.failed) }
            }
        }
    }
}
