//! Opening the home with every provider this binary knows.

use dtk_instance::home::Home;

/// Opens the home with every provider this binary knows: the built-in ones (local, ssh)
/// and the provider plugins found where [`plugin_search_dirs`] says.
pub(crate) fn open_home(home: &std::path::Path) -> anyhow::Result<Home> {
    let dirs = plugin_search_dirs(home);
    let registry = dtk_instance::providers::standard_with_plugins(home, &dirs);
    crate::cmd::remote::configure(Home::with_providers(home, registry)?)
}

/// Where `dtk` looks for provider plugins (`dtk-provider-KIND`), in order:
/// `DTK_HOME/plugins`, then the directories of `DTK_PLUGIN_PATH` when it is set, else the
/// directory of the running `dtk` executable and then `PATH` (relative entries skipped).
pub(crate) fn plugin_search_dirs(home: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut dirs = vec![home.join("plugins")];
    let absolute = |p: &std::path::PathBuf| p.is_absolute();
    match std::env::var_os("DTK_PLUGIN_PATH") {
        Some(list) => dirs.extend(std::env::split_paths(&list).filter(absolute)),
        None => {
            if let Some(dir) = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
            {
                dirs.push(dir);
            }
            if let Some(path) = std::env::var_os("PATH") {
                dirs.extend(std::env::split_paths(&path).filter(absolute));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}
