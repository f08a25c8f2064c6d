# chan_loop_lib.m4 - optional event-loop libraries for the examples.

# CHAN_LOOP_LIB(NAME, VARPREFIX, PKG-MODULE, PROLOGUE, BODY)
# ----------------------------------------------------------
# Adds --with-NAME/--without-NAME (default: use it when found).  Looks the
# library up with pkg-config as PKG-MODULE, then checks that a program
# made of PROLOGUE and BODY links with it, which a cross build may not
# (pkg-config can describe the build machine's library).  Substitutes
# VARPREFIX_CFLAGS, VARPREFIX_LIBS and have_NAME (yes or no), and defines
# the automake conditional HAVE_VARPREFIX.  --with-NAME makes a missing or
# unusable library an error.
AC_DEFUN([CHAN_LOOP_LIB], [
  AC_ARG_WITH([$1], [AS_HELP_STRING([--without-$1],
                     [do not build the $1 example of chan_pollfd])],
              [], [with_$1=check])
  have_$1=no
  AS_IF([test "x$with_$1" != xno], [
    PKG_CHECK_MODULES([$2], [$3], [have_$1=yes], [have_$1=no])
  ])
  AS_IF([test "x$have_$1" = xyes], [
    chan_save_CFLAGS="$CFLAGS"; chan_save_LIBS="$LIBS"
    CFLAGS="$CFLAGS $$2_CFLAGS"; LIBS="$$2_LIBS $LIBS"
    AC_MSG_CHECKING([whether $3 links])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[$4]], [[$5]])],
                   [AC_MSG_RESULT([yes])],
                   [AC_MSG_RESULT([no]); have_$1=no])
    CFLAGS="$chan_save_CFLAGS"; LIBS="$chan_save_LIBS"
  ])
  AS_IF([test "x$with_$1" = xyes && test "x$have_$1" != xyes],
        [AC_MSG_ERROR([--with-$1 given, but $3 was not found or does not link])])
  AC_SUBST([have_$1])
  AM_CONDITIONAL([HAVE_$2], [test "x$have_$1" = xyes])
])
