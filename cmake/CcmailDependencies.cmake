# Every dependency is a Debian 12 package. A missing one stops configure with the
# package to install, so nobody has to guess. scripts/install-deps.sh installs them all.

find_package(PkgConfig QUIET)
if(NOT PkgConfig_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config (or run scripts/install-deps.sh)")
endif()

# ccmail_require_pkgconfig(<prefix> <pkg-config module> <debian package>)
function(ccmail_require_pkgconfig prefix module debpkg)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR "${module} not found: apt-get install ${debpkg} (or run scripts/install-deps.sh)")
  endif()
endfunction()

# ccmail_require_config(<package> <debian package> [extra find_package args])
macro(ccmail_require_config pkg debpkg)
  find_package(${pkg} ${ARGN} QUIET)
  if(NOT ${pkg}_FOUND)
    message(FATAL_ERROR "${pkg} not found: apt-get install ${debpkg} (or run scripts/install-deps.sh)")
  endif()
endmacro()

set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)

ccmail_require_pkgconfig(MILTER  milter     libmilter-dev)     # PkgConfig::MILTER
ccmail_require_pkgconfig(GMIME   gmime-3.0  libgmime-3.0-dev)  # PkgConfig::GMIME
ccmail_require_pkgconfig(SQLITE3 sqlite3    libsqlite3-dev)    # PkgConfig::SQLITE3
ccmail_require_pkgconfig(LIBPQ   libpq      libpq-dev)         # PkgConfig::LIBPQ (shared ledger)
ccmail_require_pkgconfig(SYSTEMD libsystemd libsystemd-dev)    # PkgConfig::SYSTEMD (sd_notify)
ccmail_require_config(Boost libboost-dev 1.74 CONFIG)          # Boost::headers (Interprocess)
ccmail_require_config(CLI11 libcli11-dev CONFIG)                # CLI11::CLI11
if(CCMAIL_TESTS)
  ccmail_require_config(GTest "libgtest-dev libgmock-dev" CONFIG) # GTest::gtest GTest::gmock
endif()
if(CCMAIL_BENCH)
  ccmail_require_config(benchmark libbenchmark-dev CONFIG)        # benchmark::benchmark
endif()
