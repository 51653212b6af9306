import ArgumentParser
import Foundation
import Provisioner

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Show what apply would change, as a list of actions.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false
    func run() throws {
        try CLI.run {
            let e = try global.engine(json: json)
            let plan = try e.plan()
            // Work outside apply (certificate orders) is shown apart, each capability's under its key.
            let pending = try e.capabilities.compactMap { $0 as? any PendingWorkReporting }.map { ($0.pendingKey, try $0.pending(e)) }
            if json {
                var j = ChangeReport(plan: plan, result: nil).json(slugs: try e.slugsByCode())
                if case .object(var fields) = j { fields += pending.map { ($0.0, $0.1?.json ?? .null) }; j = .object(fields) }
                CLI.printJSON(j)
            } else {
                try CLI.report(ChangeReport(plan: plan, result: nil), engine: e, json: false, dryRun: true)
                for case (_, let work?) in pending where !work.lines.isEmpty {
                    print(work.heading)
                    for l in work.lines { print("  " + l) }
                }
            }
            if !plan.unknown.isEmpty {
                if !json { FileHandle.standardError.write(Data("desactl: warning: \(Engine.unknownMessage(plan.unknown))\n".utf8)) }
                throw ExitCode(ExitStatus.failed)
            }
        }
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Converge the server to the state database.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the plan and change nothing.") var dryRun = false
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Remove users and configs with desa's marks that the state database does not know (after restoring the right database failed).")
    var removeUnknown = false
    func run() throws {
        try CLI.run {
            let e = try global.engine(json: json)
            try CLI.report(try e.apply(dryRun: dryRun, removeUnknown: removeUnknown), engine: e, json: json, dryRun: dryRun)
        }
    }
}
