import ArgumentParser
import Foundation
import Provisioner

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Write the operators' status page once, as desa-agent serves it on [status] listen.",
        discussion: """
        The page (HTML, Indonesian) gives the counts, then every village that is not ok first, \
        with its failing checks and since when, its certificate's days left, its quota use as a \
        bar and its last good backup's age (when those are on), and its last 24 hours of health. \
        It is made from the last sweep desa-agent recorded (desactl health --now records one), \
        and names no password, key or path inside a home: fit for mail or a ticket.
        """
    )

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Write the page to this file (0600, replaced whole); - for standard output.", valueName: "FILE"))
    var html: String

    func run() throws {
        try CLI.run {
            let e = try global.engine(json: true)
            let page = try StatusPage.load(e).render(try Renderer(config: e.config), links: false)
            if html == "-" {
                print(page, terminator: "")
            } else {
                try AtomicFiles.write([FileWrite(path: html, content: page, mode: 0o600)])
            }
        }
    }
}
