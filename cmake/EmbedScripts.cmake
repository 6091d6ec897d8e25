# Embedding files in the binary: the generated .cpp is rewritten only when its content
# changes, and CMake re-configures when an embedded file changes.

# Reads `file` into `var` and makes a change to it re-run the configure step.
function(_embed_read file var)
  file(READ ${file} content)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  set(${var} "${content}" PARENT_SCOPE)
endfunction()

# Writes `body` to generated/cartd/<name> and returns its path in `out_var`.
function(_embed_write name body out_var)
  set(out ${CMAKE_BINARY_DIR}/generated/cartd/${name})
  file(CONFIGURE OUTPUT ${out} CONTENT "${body}" @ONLY)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()

# embed_lua_library(OUT file...) joins the Lua files, in order, into one Redis Functions
# library named `cartd` and writes generated/cartd/lua_library.cpp, which defines
# `cartd::scripts::library`. The first file holds helpers shared by the others; each
# other file registers its functions.
function(embed_lua_library out_var)
  set(lua "#!lua name=cartd_v2\n")
  foreach(file IN LISTS ARGN)
    _embed_read(${file} content)
    string(APPEND lua "${content}\n")
  endforeach()
  _embed_write(lua_library.cpp "// Generated from the Lua files under src/lua. Do not edit.\n#include <string_view>\nnamespace cartd::scripts {\nextern const std::string_view library;\nconst std::string_view library = R\"cartdlua(${lua})cartdlua\";\n}  // namespace cartd::scripts\n" out)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()

# embed_web_files(OUT file...) writes generated/cartd/web_files.cpp, which defines
# `cartd::web::files`: each file's name (relative to web/) and content, for the
# storefront that cartd serves from its own binary.
function(embed_web_files out_var)
  set(entries "")
  foreach(file IN LISTS ARGN)
    get_filename_component(name ${file} NAME)
    _embed_read(${file} content)
    string(APPEND entries "  {\"${name}\", R\"cartdweb(${content})cartdweb\"},\n")
  endforeach()
  _embed_write(web_files.cpp "// Generated from web/. Do not edit.\n#include \"http/static_files.hpp\"\nnamespace cartd::web {\nconst std::vector<StaticFile> files = {\n${entries}};\n}  // namespace cartd::web\n" out)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
