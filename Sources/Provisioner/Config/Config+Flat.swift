// Short names for the core sections' values (`config.webRoot` for `config.paths.webRoot`).
// Capabilities' sections are reached through their own accessor (`config.nginx.sitesDir`).

extension Config {
    public var regencyCode: String { get { regency.code } set { regency.code = newValue } }
    public var domain: String { get { regency.domain } set { regency.domain = newValue } }

    public var stateDir: String { get { paths.stateDir } set { paths.stateDir = newValue } }
    public var webRoot: String { get { paths.webRoot } set { paths.webRoot = newValue } }
    public var archiveDir: String { get { paths.archiveDir } set { paths.archiveDir = newValue } }
    public var acmeRoot: String { get { paths.acmeRoot } set { paths.acmeRoot = newValue } }
    public var logDir: String { get { paths.logDir } set { paths.logDir = newValue } }
    public var templates: String { get { paths.templates } set { paths.templates = newValue } }
    public var operatorTemplates: String? { get { paths.operatorTemplates } set { paths.operatorTemplates = newValue } }

    public var userPrefix: String { get { users.prefix } set { users.prefix = newValue } }
    public var uidMin: Int { get { users.uidMin } set { users.uidMin = newValue } }
    public var uidMax: Int { get { users.uidMax } set { users.uidMax = newValue } }
    public var webGroup: String { get { users.webGroup } set { users.webGroup = newValue } }
    public var sysusersFile: String { get { users.sysusersFile } set { users.sysusersFile = newValue } }
    public var passwdFile: String { get { users.passwdFile } set { users.passwdFile = newValue } }
}
