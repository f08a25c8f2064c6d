# chan_cflags.m4 - compiler flags that configure adds only when they work.

# CHAN_TRY_CFLAG(FLAG, VARIABLE)
# ------------------------------
# Appends FLAG to the shell VARIABLE when $CC compiles an empty program
# with it (and with -Werror, so that a flag the compiler merely warns about
# is left out).
AC_DEFUN([CHAN_TRY_CFLAG], [
  AC_MSG_CHECKING([whether $CC accepts $1])
  chan_save_CFLAGS="$CFLAGS"
  CFLAGS="$CFLAGS $1 -Werror"
  AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])],
                    [AC_MSG_RESULT([yes]); $2="$$2 $1"],
                    [AC_MSG_RESULT([no])])
  CFLAGS="$chan_save_CFLAGS"
])

# CHAN_COMPILER_SANITIZES(NAME, GCC-MACRO, CLANG-FEATURE, VARIABLE, [EXTRA-CFLAGS])
# ---------------------------------------------------------------------------------
# Sets the shell VARIABLE to yes when code compiled with $CFLAGS and
# EXTRA-CFLAGS is instrumented by the sanitizer NAME, asking the compiler
# the way src/internal.h does (GCC's GCC-MACRO, clang's
# __has_feature(CLANG-FEATURE)); to no otherwise.  So a sanitizer turned on
# by the user's own CFLAGS counts as much as one turned on by configure.
AC_DEFUN([CHAN_COMPILER_SANITIZES], [
  AC_MSG_CHECKING([whether the build uses $1])
  chan_save_CFLAGS="$CFLAGS"
  CFLAGS="$CFLAGS $5"
  AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [
#if defined($2)
#elif defined(__has_feature)
#if !__has_feature($3)
#error no $1
#endif
#else
#error no $1
#endif
])], [$4=yes], [$4=no])
  CFLAGS="$chan_save_CFLAGS"
  AC_MSG_RESULT([$$4])
])
