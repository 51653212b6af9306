import ArgumentParser
import Foundation
import Provisioner

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check a desa.toml, or print every key with its default and what it does.",
        subcommands: [Check.self, Reference.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the config file and print the effective config, defaults filled in, as TOML with each key's documentation.",
            discussion: """
            Exits 0 when the file is valid. Otherwise prints one line naming the key \
            (an unknown key or section, a wrong type, a bad value) and exits 1.
            """
        )
        @Option(name: .long, help: ArgumentHelp("Config file to check (default: $DESA_CONFIG or /etc/desa/desa.toml).", valueName: "PATH"))
        var config: String?

        func run() throws {
            try CLI.run {
                let c = try Config.load(path: Config.resolvedPath(config))
                print("# \(c.path): valid; every key with its effective value")
                print("# Each tenant's share, as this server holds it:")
                for line in QuotaSettings.enforcement(c) { print("#   " + line) }
                print(c.annotatedTOML(), terminator: "")
            }
        }
    }

    struct Reference: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every key of desa.toml with its default and one line on what it does (a complete, valid file).")

        func run() throws {
            print(Config.reference(), terminator: "")
        }
    }
}
