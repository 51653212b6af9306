import ArgumentParser
import Foundation
import Provisioner

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make this server (Debian's nginx and php-fpm, MariaDB if asked) a desa server: config, nginx include, agent.",
        discussion: """
        Writes the config (--config, $DESA_CONFIG or /etc/desa/desa.toml; 0600) unless it exists, \
        and the nginx include /etc/nginx/conf.d/desa.conf (checked with nginx -t, then nginx \
        reloaded); starts php-fpm (and MariaDB, checking that root signs in by unix socket) if \
        they do not run; enables and starts desa-agent; checks the config; prints what to do next. \
        Run again, it changes nothing. A config for another regency is never overwritten (exit 1), \
        and other nginx sites are left alone.
        """
    )
    @Option(help: ArgumentHelp("The regency's code, PP.RR (e.g. 32.04).", valueName: "CODE")) var regency: String
    @Option(help: ArgumentHelp("The regency's domain; each village is SLUG.DOMAIN.", valueName: "DOMAIN")) var domain: String
    @Flag(help: "Give villages databases on this server's MariaDB (mariadb.enabled).") var withMariadb = false
    @Option(help: ArgumentHelp("HTTPS certificates from: letsencrypt, letsencrypt-staging, or none.", valueName: "CA")) var tls = "none"
    @Option(help: ArgumentHelp("The ACME account's e-mail address (with --tls).", valueName: "ADDRESS")) var contact = ""
    @Flag(help: "Say what would be done; change nothing.") var dryRun = false

    func run() throws {
        try CLI.run {
            guard let choice = ServerInit.TLSChoice(rawValue: tls) else {
                throw DesaError(.invalidInput, "--tls must be letsencrypt, letsencrypt-staging or none (got \(Quote.show(tls)))")
            }
            var o = ServerInit.Options(regency: regency, domain: domain)
            o.withMariaDB = withMariadb; o.tls = choice; o.contact = contact; o.dryRun = dryRun
            o.configPath = Config.resolvedPath(nil)
            var s = ServerInit(o)
            defer { for line in s.lines { print(line) } }
            try s.run()
        }
    }
}
