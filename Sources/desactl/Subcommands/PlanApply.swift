import ArgumentParser
import Foundation
import Provisioner

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Show what apply would change, as a list of actions.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false
    func run() throws {
        try desactl.run {
            let e = try global.engine(json: json)
            let plan = try e.plan()
            // Certificates are ordered by `cert issue` (and the agent), not by apply: shown apart.
            let certs = e.config.tls.enabled ? try e.certPlan() : nil
            if json {
                var j = ChangeReport(plan: plan, result: nil).json(slugs: try e.slugsByCode())
                if case .object(var fields) = j { fields.append(("certificates", certs?.json ?? .null)); j = .object(fields) }
                printJSON(j)
            } else {
                try report(ChangeReport(plan: plan, result: nil), engine: e, json: false, dryRun: true)
                if let certs, !certs.lines.isEmpty {
                    print("certificates (desactl cert issue --all):")
                    for l in certs.lines { print("  " + l) }
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
        try desactl.run {
            let e = try global.engine(json: json)
            try report(try e.apply(dryRun: dryRun, removeUnknown: removeUnknown), engine: e, json: json, dryRun: dryRun)
        }
    }
}
