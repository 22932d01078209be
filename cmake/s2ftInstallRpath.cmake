# s2ft_install_rpath(<target> <install dir of the target>)
#
# Gives an installed executable or library the RUNPATH $ORIGIN/<path from its
# install folder to CMAKE_INSTALL_LIBDIR>, so it loads libs2ft.so.0 from the
# same prefix without LD_LIBRARY_PATH, ldconfig or an absolute path (the
# prefix stays relocatable). The build tree keeps CMake's own build RPATH.
function(s2ft_install_rpath target dir)
  # Relative install dirs are what GNUInstallDirs gives by default; with an
  # absolute one the two folders are not tied to one prefix, so name it.
  if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    set_target_properties(${target} PROPERTIES INSTALL_RPATH "${CMAKE_INSTALL_LIBDIR}")
    return()
  endif()
  if(IS_ABSOLUTE "${dir}")
    message(FATAL_ERROR "s2ft_install_rpath: '${dir}' is absolute while CMAKE_INSTALL_LIBDIR is relative")
  endif()
  file(RELATIVE_PATH rel "/prefix/${dir}" "/prefix/${CMAKE_INSTALL_LIBDIR}")
  if(rel STREQUAL "")
    set(origin "$ORIGIN")
  else()
    set(origin "$ORIGIN/${rel}")
  endif()
  set_target_properties(${target} PROPERTIES INSTALL_RPATH "${origin}")
endfunction()
