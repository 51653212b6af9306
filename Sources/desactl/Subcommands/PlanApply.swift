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
            try report(ChangeReport(plan: try e.plan(), result: nil), engine: e, json: json, dryRun: true)
        }
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Converge the server to the state database.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the plan and change nothing.") var dryRun = false
    @Flag(help: "Print JSON.") var json = false
    func run() throws {
        try desactl.run {
            let e = try global.engine(json: json)
            try report(try e.apply(dryRun: dryRun), engine: e, json: json, dryRun: dryRun)
        }
    }
}
